"""Command modules for ``rdb24``; each defines ``register(main)``."""

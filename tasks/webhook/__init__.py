"""The Bitrix24 event receiver (``rdb24 webhook``): operator replies in, tasks out. An entry point:
workers never import it (it pulls in FastAPI).

``receiver`` (the FastAPI app: checks, stores, answers), ``spool`` (each process's fsynced SQLite
file, adopted by a successor when the process died) and ``drain`` (the thread that publishes spooled
replies and deletes each once the broker took it)."""

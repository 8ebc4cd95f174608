"""Settings for CLI tools that talk to a running ``rdb24 up`` stack (``rdb24 status``, ``rdb24 demo``).

The stack resolves some settings itself (an embedded Valkey's URL, the simulators' logins) and
records them in its state file; a tool run from another terminal must see the same values. They are
passed to ``Settings`` as init arguments, so they win over the environment and ``.env`` without
touching ``os.environ``. With no stack running, the plain configured settings are used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.errors import SettingsError
from tasks.settings import Settings, load_settings

if TYPE_CHECKING:
    from sandbox.stack.state import StackState

DEFAULT_RUN_DIR = Path("var")  # sandbox.stack.state.DEFAULT_RUN_DIR


def settings_with_overrides(overrides: dict[str, str]) -> Settings:
    aliases = {field.alias for field in Settings.model_fields.values() if field.alias}
    known: dict[str, Any] = {key: value for key, value in overrides.items() if key in aliases}
    if not known:
        return load_settings()
    try:
        return Settings(**known)
    except ValueError as exc:
        raise SettingsError(f"invalid stack configuration: {exc}") from None


def stack_settings(run_dir: Path = DEFAULT_RUN_DIR) -> tuple[Settings, StackState | None]:
    """The running stack's settings and state, or the configured settings and None.

    An installation without the simulators (the production image) has no local stack to read.
    """
    try:
        from sandbox.stack.state import read_state
    except ImportError:
        return load_settings(), None
    state = read_state(run_dir)
    return settings_with_overrides(state.env if state else {}), state

"""Serve the dashboard closed: ``python serve.py [streamlit options]`` is ``streamlit run app.py`` with no outside call.

``.streamlit/config.toml`` binds 127.0.0.1, keeps CORS and XSRF protection on and turns
usage statistics off. One outside call is left that no setting turns off: when a page of
another origin opens the app's websocket, Streamlit checks whether that origin is this
machine by looking up its addresses, a UDP "connect" towards 8.8.8.8 and an HTTP request to
checkip.amazonaws.com (``streamlit.net_util``, reached from
``server_util.is_url_from_allowed_origins``). This launcher answers both lookups with the
loopback address before the server starts, which is already allowed, so a foreign origin is
refused without any outside call. ``make demo`` serves through it;
``tests/reliability/test_closed_by_default.py`` checks that no connection leaves the machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

LOOPBACK = "127.0.0.1"
APP = Path(__file__).resolve().parent / "app.py"


def pin_addresses() -> None:
    """Answer Streamlit's internal and external IP lookups with the loopback address, without asking anyone."""
    from streamlit import net_util

    net_util._internal_ip = LOOPBACK  # the lookups' caches: a set value is returned without a lookup
    net_util._external_ip = LOOPBACK
    net_util.get_internal_ip = lambda: LOOPBACK  # and the lookups themselves, should the caches change
    net_util.get_external_ip = lambda: LOOPBACK


def main(args: list[str]) -> int:
    """``streamlit run app.py *args`` in this process, after :func:`pin_addresses`."""
    pin_addresses()
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(APP), *args]
    try:
        cli.main(prog_name="streamlit")
    except SystemExit as exc:  # click ends with SystemExit: its code is ours
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

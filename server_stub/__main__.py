"""`python -m server_stub`: build the engine, wrap it in the web app, serve it with uvicorn.

Prints exactly one line, `server_stub listening on http://HOST:PORT`, once the socket accepts
connections (with `--port 0` it names the port the OS picked), so scripts can wait for it.
"""

from __future__ import annotations

import gc
import logging
import socket
import sys
from collections.abc import Sequence

import uvicorn

from server_stub.auth import check_bind_allowed, tenants_by_key
from server_stub.config import ConfigError, config_from_args

READY_PREFIX = "server_stub listening on "


class _AnnouncingServer(uvicorn.Server):
    """A uvicorn server that prints the ready line after its sockets are bound."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            bound = self.servers[0].sockets[0].getsockname() if self.servers else None
            port = bound[1] if bound else self.config.port
            host = self.config.host
            shown = f"[{host}]" if ":" in host else host
            print(f"{READY_PREFIX}http://{shown}:{port}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = config_from_args(argv)
        check_bind_allowed(config.host, config.api_key, config.keys_file)
        tenants_by_key(config.api_key, config.keys_file)  # a malformed keys file stops the start here
    except ConfigError as exc:
        print(f"server_stub: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from server_stub.app import create_app
    from server_stub.build import build_engine

    app = create_app(build_engine(config), config)
    # Start-up's objects (modules, schemas, models) live as long as the server: out of the full
    # collections that would rescan them all, pausing whatever call they land on (bench/README.md,
    # "full collections kept short"). No collection first: start-up leaves almost no cyclic garbage.
    gc.freeze()
    server = _AnnouncingServer(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level=config.log_level,
            access_log=False,
            timeout_keep_alive=int(config.keep_alive_seconds),
            # Said on every answer, so clients keep idle connections as long as this server does.
            headers=[("Keep-Alive", f"timeout={int(config.keep_alive_seconds)}")],
            timeout_graceful_shutdown=3,
        )
    )
    if config.exit_with_parent is not None:
        from server_stub.parent_watch import watch_parent

        watch_parent(config.exit_with_parent, lambda: setattr(server, "should_exit", True))
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())

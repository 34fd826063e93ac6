"""The ``gimel`` command."""

from __future__ import annotations

import os
import secrets
import signal
import sys
from pathlib import Path
from urllib.parse import quote

import click

from . import defaults
from .config import Config
from .errors import ConfigError


def local_api_key(data_dir: str) -> str:
    """The key of a local install: generated once, kept (owner-only) in the data dir."""
    path = Path(data_dir) / "api-key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    return key


@click.group()
@click.version_option(package_name="gimel")
def main() -> None:
    """Gimel: a tiny, private A/B-testing backend for Alephbet."""


@main.command()
@click.option("--host", default=defaults.HOST, show_default=True, envvar="GIMEL_HOST")
@click.option("--port", default=defaults.PORT, show_default=True, type=int, envvar="GIMEL_PORT")
@click.option(
    "--data-dir",
    default=defaults.DATA_DIR,
    show_default=True,
    envvar="GIMEL_DATA_DIR",
    help="Where the embedded Redis keeps its data and the local API key lives.",
)
@click.option("--threads", default=8, show_default=True, type=int, help="Worker threads.")
def serve(host: str, port: int, data_dir: str, threads: int) -> None:
    """Run Gimel locally under a production WSGI server (waitress).

    With no GIMEL_REDIS_URL, an embedded Redis keeps the data in --data-dir.
    """
    import waitress

    from .app import create_app

    try:
        config = Config.from_env()
        overrides: dict[str, object] = {"data_dir": data_dir}
        if not config.api_keys:
            overrides["api_keys"] = (local_api_key(data_dir),)
        app = create_app(config.with_overrides(overrides))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    # Bind before printing, so the URLs in the banner answer as soon as they appear.
    server = waitress.create_server(app, host=host, port=port, threads=threads, ident="gimel")
    base = f"http://{host}:{port}"
    store = app.extensions.get("gimel_embedded")
    click.echo(f"Gimel is listening on {base}")
    click.echo(f"  track URL : {base}/track")
    click.echo(f"  API key   : {app.config['GIMEL'].api_keys[0]}")
    where = f"embedded, data in {store.data_dir}" if store else "GIMEL_REDIS_URL"
    click.echo(f"  Redis     : {where}")
    click.echo(
        f"  try       : curl '{base}/track?experiment=demo&variant=red&event=participate"
        f"&uuid={quote(secrets.token_hex(8))}'"
    )
    click.echo("Press Ctrl-C to stop.")
    sys.stdout.flush()
    # SIGTERM (systemd, docker stop, CI) stops as cleanly as Ctrl-C: Redis flushes its AOF.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        if store is not None:
            store.stop()
        click.echo("Gimel stopped.")


if __name__ == "__main__":
    main()

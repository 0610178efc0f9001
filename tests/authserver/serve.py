"""Run the test authorization server (django-oauth-toolkit) on 127.0.0.1.

    .venv/bin/python serve.py --port 0 --data-dir DIR [--access-token-lifetime SECS] [--no-oidc]

Creates a fresh sqlite database in DIR, migrates, seeds the fixtures (see README.md),
then serves with a threaded WSGI server and prints one line `READY port=<N>` on stdout.
Exits cleanly on SIGTERM or SIGINT.
"""

import argparse
import os
import signal
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Fixtures: keep in sync with README.md and tests/src/peers.rs.
USERS = {
    "alice": "correct horse battery staple",
    "bob": "p&ss=w+rd%20/:x ünï",
}
CLIENTS = [
    # client_id, client_type, grant type, secret (plaintext; DOT hashes it on save)
    ("tb-password", "confidential", "password", "s3cr&t=+%/: é"),
    ("tb-cc", "confidential", "client-credentials", "tb-cc-secret"),
    ("tb-public", "public", "password", ""),
    ("tb-introspect", "confidential", "client-credentials", "tb-introspect-secret"),
]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--data-dir", required=True, type=Path)
    p.add_argument("--access-token-lifetime", type=int, default=3600, metavar="SECS")
    p.add_argument("--no-oidc", action="store_true", help="do not enable OpenID Connect")
    return p.parse_args()


def oidc_key_pem():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def seed():
    from django.contrib.auth import get_user_model
    from oauth2_provider.models import get_application_model

    User = get_user_model()
    Application = get_application_model()
    for name, password in USERS.items():
        User.objects.create_user(username=name, password=password)
    for client_id, client_type, grant, secret in CLIENTS:
        Application.objects.create(
            name=client_id,
            client_id=client_id,
            client_secret=secret,
            client_type=client_type,
            authorization_grant_type=grant,
            redirect_uris="",
            algorithm="",
        )


def main():
    args = parse_args()
    data_dir = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    db = data_dir / "authserver.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)

    sys.path.insert(0, str(HERE))
    os.environ["DJANGO_SETTINGS_MODULE"] = "tbauth.settings"
    os.environ["TB_AUTH_DATA_DIR"] = str(data_dir)
    os.environ["TB_AUTH_ACCESS_TOKEN_LIFETIME"] = str(args.access_token_lifetime)
    os.environ["TB_AUTH_OIDC_KEY"] = "" if args.no_oidc else oidc_key_pem()

    import django

    django.setup()

    from django.core.management import call_command
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application

    call_command("migrate", interactive=False, verbosity=0)
    seed()

    app = get_wsgi_application()
    server = ThreadedWSGIServer(("127.0.0.1", args.port), WSGIRequestHandler, allow_reuse_address=False)
    server.set_app(app)

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    print(f"READY port={server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()

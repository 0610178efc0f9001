"""Django settings of the test authorization server.

serve.py sets TB_AUTH_DATA_DIR, TB_AUTH_ACCESS_TOKEN_LIFETIME and TB_AUTH_OIDC_KEY (and the test
harness TB_AUTH_REFRESH_GRACE)
in the environment before Django reads this module.
"""

import os
from pathlib import Path

DATA_DIR = Path(os.environ.get("TB_AUTH_DATA_DIR", "."))

SECRET_KEY = "tokenbroker-test-authserver-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
ROOT_URLCONF = "tbauth.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "oauth2_provider",
]

MIDDLEWARE = [
    "tbauth.counters.CountersMiddleware",
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DATA_DIR / "authserver.sqlite3",
        "OPTIONS": {
            # Threaded server: wait for the write lock instead of failing fast,
            # and take it at BEGIN so concurrent transactions cannot deadlock.
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
}

# The default PBKDF2 hasher costs ~0.5 s per password check; tests do many grants.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]

_oidc_key = os.environ.get("TB_AUTH_OIDC_KEY", "")

OAUTH2_PROVIDER = {
    "ACCESS_TOKEN_EXPIRE_SECONDS": int(os.environ.get("TB_AUTH_ACCESS_TOKEN_LIFETIME", "3600")),
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": int(os.environ.get("TB_AUTH_REFRESH_GRACE", "0")),
    "SCOPES": {
        "read": "Read",
        "write": "Write",
        "profile": "Profile",
        "introspection": "Introspect tokens",
        **({"openid": "OpenID Connect"} if _oidc_key else {}),
    },
    "DEFAULT_SCOPES": ["read"],
    "OIDC_ENABLED": bool(_oidc_key),
    "OIDC_RSA_PRIVATE_KEY": _oidc_key,
    "PKCE_REQUIRED": False,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django.server": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "oauth2_provider": {"handlers": ["stderr"], "level": "ERROR", "propagate": False},
    },
}

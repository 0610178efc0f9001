"""Tests of the tokenbroker package against a real daemon. Run by tests/tests/python.rs, which
starts the daemon, the authorization server and the keychain, and sets:

TB_SOCKET        the daemon's socket
TB_ACCOUNT       an account this interpreter is allowed
TB_OTHER         an account it has no rule for
TB_TOKEN_OUT     a file to write the token to (the Rust side asks the server if it is active)
"""

import os
import tempfile
import time
import unittest

import tokenbroker

SOCKET = os.environ["TB_SOCKET"]
ACCOUNT = os.environ["TB_ACCOUNT"]
OTHER = os.environ["TB_OTHER"]


class GetToken(unittest.TestCase):
    def test_a_token_for_an_allowed_account(self):
        t = tokenbroker.get_token(ACCOUNT, socket_path=SOCKET)
        self.assertTrue(t.access_token)
        self.assertEqual(t.token_type, "Bearer")
        self.assertGreater(t.expires_at, time.time())
        self.assertIsInstance(t.scopes, tuple)
        with open(os.environ["TB_TOKEN_OUT"], "w") as f:
            f.write(t.access_token)

    def test_the_token_is_not_in_its_repr(self):
        t = tokenbroker.get_token(ACCOUNT, socket_path=SOCKET)
        self.assertNotIn(t.access_token, repr(t))
        self.assertNotIn(t.access_token, str(t))

    def test_one_connection_serves_many_requests(self):
        with tokenbroker.Client(SOCKET) as c:
            a = c.get_token(ACCOUNT)
            b = c.get_token(ACCOUNT, min_ttl=10)
            self.assertEqual(a.access_token, b.access_token)
            self.assertTrue(c.daemon_version)

    def test_the_default_socket_comes_from_the_environment(self):
        old = dict(os.environ)
        try:
            os.environ["TOKENBROKER_SOCKET"] = SOCKET
            self.assertEqual(tokenbroker.default_socket_path(), SOCKET)
            self.assertTrue(tokenbroker.get_token(ACCOUNT).access_token)
            del os.environ["TOKENBROKER_SOCKET"]
            os.environ["XDG_RUNTIME_DIR"] = "/run/user/4242"
            self.assertEqual(tokenbroker.default_socket_path(), "/run/user/4242/tokenbroker/socket")
            del os.environ["XDG_RUNTIME_DIR"]
            with self.assertRaises(tokenbroker.NotRunning):
                tokenbroker.default_socket_path()
            self.assertEqual(tokenbroker.default_socket_path(system=True), "/run/tokenbroker/socket")
        finally:
            os.environ.clear()
            os.environ.update(old)


class Errors(unittest.TestCase):
    def test_an_account_without_a_rule_is_denied(self):
        with self.assertRaises(tokenbroker.Denied) as e:
            tokenbroker.get_token(OTHER, socket_path=SOCKET)
        self.assertEqual(e.exception.kind, "denied")
        self.assertEqual(e.exception.exit_code, 4)
        self.assertEqual(e.exception.code, -32004)
        self.assertIn("tokenbroker allow", str(e.exception))
        self.assertIsInstance(e.exception, tokenbroker.TokenbrokerError)

    def test_a_bad_name_is_an_invalid_argument(self):
        with self.assertRaises(tokenbroker.InvalidArgument) as e:
            tokenbroker.get_token("not a name", socket_path=SOCKET)
        self.assertEqual(e.exception.exit_code, 2)

    def test_wrong_types_are_refused_before_sending(self):
        with tokenbroker.Client(SOCKET) as c:
            with self.assertRaises(TypeError):
                c.get_token(ACCOUNT, scopes="read")  # one string, not a list of scopes
            with self.assertRaises(TypeError):
                c.get_token(ACCOUNT, min_ttl="60")  # type: ignore[arg-type]
            # The connection is still good.
            self.assertTrue(c.get_token(ACCOUNT).access_token)

    def test_no_daemon_is_not_running(self):
        with tempfile.TemporaryDirectory() as d:
            with self.assertRaises(tokenbroker.NotRunning) as e:
                tokenbroker.get_token(ACCOUNT, socket_path=os.path.join(d, "socket"))
            self.assertEqual(e.exception.exit_code, 6)
            self.assertIn("not running", str(e.exception))


if __name__ == "__main__":
    unittest.main()

"""A real SMTP server for the e-mail channel tests (aiosmtpd).

  python3 smtp_server.py --port P --mode starttls|implicit|plain --out DIR
                         [--cert C --key K] [--user U --password W] [--fail-first N]

Each accepted message is written to DIR/<n>.json: envelope, headers and the decoded text and
HTML parts (parsed with the standard library's `email` package). With --fail-first N the first
N messages are answered `451 4.3.0` (a transient failure). Prints READY when listening.
"""
import argparse
import asyncio
import email
import email.policy
import json
import os
import ssl

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--mode", choices=["starttls", "implicit", "plain"], required=True)
p.add_argument("--out", required=True)
p.add_argument("--cert")
p.add_argument("--key")
p.add_argument("--user")
p.add_argument("--password")
p.add_argument("--fail-first", type=int, default=0)
a = p.parse_args()


class Handler:
    def __init__(self):
        self.n = 0
        self.failed = 0

    async def handle_DATA(self, server, session, envelope):
        if self.failed < a.fail_first:
            self.failed += 1
            return "451 4.3.0 try again later"
        self.n += 1
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        plain = msg.get_body(("plain",))
        html = msg.get_body(("html",))
        out = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": session.ssl is not None
            or server.transport.get_extra_info("ssl_object") is not None,
            "authenticated": bool(session.authenticated),
            "content_type": msg.get_content_type(),
            "headers": {k: str(v) for k, v in msg.items()},
            "parts": [part.get_content_type() for part in msg.iter_parts()],
            "text": plain.get_content() if plain is not None else None,
            "html": html.get_content() if html is not None else None,
        }
        path = os.path.join(a.out, f"{self.n}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(out, f)
        os.rename(path + ".tmp", path)
        return f"250 2.0.0 OK queued as pw{self.n}"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == a.user
        and auth_data.password.decode() == a.password
    )
    return AuthResult(success=ok, handled=False)


def tls_context():
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(a.cert, a.key)
    return ctx


kwargs = {"hostname": "portwarden-test-smtp"}
if a.user:
    # aiosmtpd only counts STARTTLS as TLS; with implicit TLS the whole connection is TLS.
    kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=a.mode == "starttls")
if a.mode == "starttls":
    kwargs.update(tls_context=tls_context(), require_starttls=True)
handler = Handler()
loop = asyncio.new_event_loop()
server = loop.run_until_complete(
    loop.create_server(
        lambda: SMTP(handler, **kwargs),
        "127.0.0.1",
        a.port,
        ssl=tls_context() if a.mode == "implicit" else None,
    )
)
print("READY", flush=True)
loop.run_forever()

#!/usr/bin/env python3
"""The providers camfa hands codes to, for the black-box tests (issue 25).

usage: code-receivers.py OUT_DIR SMTP_PORT WEBHOOK_PORT CERT KEY USER PASSWORD SECRET_FILE

- An SMTP submission server (aiosmtpd) on 127.0.0.1:SMTP_PORT that requires STARTTLS
  (CERT/KEY) and AUTH (USER/PASSWORD) before MAIL; each message it takes is written to
  OUT_DIR/mail-N.eml, headed by X-Test-TLS and X-Test-Login lines saying how it came.
- A webhook receiver on 127.0.0.1:WEBHOOK_PORT that checks Camfa-Signature
  (t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>, |now - t| <= 300 s) with the
  secret in SECRET_FILE: a valid request is written to OUT_DIR/hook-N.json and answered
  204; an invalid one to OUT_DIR/bad-N.json and answered 401. A number ending in 0000 is
  refused 503 (a provider failing).
OUT_DIR/ready appears once both listen.
"""
import hashlib, hmac, http.server, os, signal, ssl, sys, threading, time

try:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult
except ImportError as e:
    print(f"code-receivers.py needs aiosmtpd (scripts/install-deps.sh): {e}", file=sys.stderr)
    sys.exit(3)

out, smtp_port, hook_port, cert, key, user, password, secret_file = sys.argv[1:9]
secret = open(secret_file, "rb").read().rstrip(b"\r\n")
lock = threading.Lock()
counter = [0]


def write(prefix, data):
    with lock:
        counter[0] += 1
        path = os.path.join(out, f"{prefix}-{counter[0]}")
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.rename(path + ".tmp", path + (".eml" if prefix == "mail" else ".json"))


class Mail:
    async def handle_DATA(self, server, session, envelope):
        login = getattr(session.auth_data, "login", b"") if session.authenticated else b""
        head = f"X-Test-TLS: {'yes' if session.ssl else 'no'}\r\nX-Test-Login: {login.decode()}\r\nX-Test-Rcpt: {','.join(envelope.rcpt_tos)}\r\n"
        write("mail", head.encode() + envelope.original_content)
        return "250 OK"


def authenticate(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == user.encode() and auth_data.password == password.encode()
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)
controller = Controller(Mail(), hostname="127.0.0.1", port=int(smtp_port), tls_context=context, require_starttls=True,
                        authenticator=authenticate, auth_required=True, auth_require_tls=True)
controller.start()


class Hook(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        sig = dict(p.split("=", 1) for p in self.headers.get("Camfa-Signature", "").split(",") if "=" in p)
        expected = hmac.new(secret, sig.get("t", "").encode() + b"." + body, hashlib.sha256).hexdigest()
        fresh = sig.get("t", "").isdigit() and abs(time.time() - int(sig["t"])) <= 300
        if not (fresh and hmac.compare_digest(expected, sig.get("v1", ""))):
            write("bad", body)
            self.send_response(401)
        elif b'0000"' in body:
            self.send_response(503)
        else:
            write("hook", body)
            self.send_response(204)
        self.end_headers()


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(hook_port)), Hook)
threading.Thread(target=server.serve_forever, daemon=True).start()
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
open(os.path.join(out, "ready"), "w").close()
try:
    while True:
        time.sleep(3600)
except KeyboardInterrupt:
    pass
finally:
    controller.stop()

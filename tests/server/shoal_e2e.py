#!/usr/bin/env python3
"""End-to-end tests of `shoal serve` through the real HTTP path (docs/api.md is the contract).

Standard library only. The binary comes from $SHOAL_BIN. Every test class starts its own server on
a free port with a fresh data directory; time-dependent behaviour is driven through `--clock` and
`POST /v1/debug/clock`, never by sleeping.

    SHOAL_BIN=/work/build-e2e/shoal python3 tests/server/shoal_e2e.py [-v] [Class[.test] ...]

Environment: SHOAL_E2E_SEED (crash test seed), SHOAL_E2E_KEEP=1 (keep the temp dirs and logs),
SHOAL_E2E_CRASH_ROUNDS (default 4).
"""

import base64
import gzip
import http.client
import json
import os
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
import uuid
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
WRITE_KEY = "wk_e2e_test"
ADMIN_TOKEN = "at_e2e_secret"
CLOCK0 = "2026-11-01T00:00:00Z"
TMP_ROOT = tempfile.mkdtemp(prefix="shoal-e2e-")
RESTART_TIMES = []  # (label, seconds): process start to the first /healthz 200


# --------------------------------------------------------------------------------------------
# Time helpers
# --------------------------------------------------------------------------------------------

def parse_iso(s):
    """ISO 8601 UTC string -> epoch millis."""
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    dt = datetime.fromisoformat(s)
    return int(round(dt.timestamp() * 1000))


def iso(ms):
    """epoch millis -> the API's form: 2026-11-01T00:00:00Z, with .mmm when needed."""
    dt = datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    frac = ms % 1000
    return base + (".%03dZ" % frac if frac else "Z")


H = 3600 * 1000
D = 24 * H
M = 60 * 1000
T_CLOCK0 = parse_iso(CLOCK0)


def mid():
    return "m-" + uuid.uuid4().hex


def short(x, n=300):
    if isinstance(x, (bytes, bytearray)):
        try:
            s = bytes(x[:n]).decode("utf-8")
        except UnicodeDecodeError:
            if not bytes(x).startswith(b"\x1f\x8b"):
                s = bytes(x[:n]).decode("utf-8", "replace")
            else:
                return "(gzip, %d bytes)" % len(x)
        extra = len(x) - n
    else:
        s = json.dumps(x) if not isinstance(x, str) else x
        extra = len(s) - n
        s = s[:n]
    return s + ("...(+%d bytes)" % extra if extra > 0 else "")


def basic(key, password=""):
    return "Basic " + base64.b64encode(("%s:%s" % (key, password)).encode()).decode()


# --------------------------------------------------------------------------------------------
# The server under test
# --------------------------------------------------------------------------------------------

class Resp:
    def __init__(self, method, path, req_body, status, headers, body):
        self.method, self.path, self.req_body = method, path, req_body
        self.status, self.headers, self.body = status, headers, body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def describe(self):
        rb = "" if self.req_body is None else " " + short(self.req_body, 240)
        return "%s %s%s -> %d %s" % (self.method, self.path, rb, self.status, short(self.body, 400))

    def err_code(self):
        j = self.json or {}
        e = j.get("error") if isinstance(j, dict) else None
        return e.get("code") if isinstance(e, dict) else None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """One `shoal serve` process on a free port with its own data directory."""

    def __init__(self, name, clock=CLOCK0, write_key=WRITE_KEY, admin_token=ADMIN_TOKEN,
                 extra_args=()):
        self.bin = os.environ.get("SHOAL_BIN")
        if not self.bin or not os.path.exists(self.bin):
            raise RuntimeError("SHOAL_BIN is not set or does not exist: %r" % self.bin)
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=name + "-", dir=TMP_ROOT)
        self.data_dir = os.path.join(self.dir, "data")
        self.clock = clock
        self.now = parse_iso(clock) if clock else None  # the virtual clock as last set
        self.write_key, self.admin_token = write_key, admin_token
        self.extra_args = list(extra_args)
        self.proc = None
        self.port = None
        self.log_path = None
        self.starts = 0
        self._local = threading.local()

    # -- process control --
    def start(self, clock=None, timeout=60):
        """Starts the server (optionally with a new --clock) and waits for /healthz 200.
        Returns the seconds from process start to the first 200."""
        if clock is not None:
            self.clock = clock
            self.now = parse_iso(clock)
        elif self.clock:
            self.now = parse_iso(self.clock)
        self.port = free_port()
        self.starts += 1
        self.log_path = os.path.join(self.dir, "server-%d.log" % self.starts)
        args = [self.bin, "serve", "--port", str(self.port), "--data-dir", self.data_dir,
                "--host", "127.0.0.1"]
        if self.write_key is not None:
            args += ["--write-key", self.write_key]
        if self.admin_token is not None:
            args += ["--admin-token", self.admin_token]
        if self.clock:
            args += ["--clock", self.clock]
        args += self.extra_args
        self.args = args
        log = open(self.log_path, "wb")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()
        self._reset_conns()
        deadline = t0 + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("shoal serve exited with %s before /healthz 200; log:\n%s"
                                   % (self.proc.returncode, self.log_tail()))
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/healthz")
                r = c.getresponse()
                r.read()
                c.close()
                if r.status == 200:
                    elapsed = time.monotonic() - t0
                    return elapsed
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("shoal serve not healthy after %ss; log:\n%s"
                                   % (timeout, self.log_tail()))
            time.sleep(0.01)

    def stop(self, timeout=15):
        """SIGTERM; returns the exit code (None when it had to be killed)."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        finally:
            self._reset_conns()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._reset_conns()

    def restart(self, clock=None, hard=False, label=None):
        if hard:
            self.kill()
        else:
            self.stop()
        secs = self.start(clock=clock)
        RESTART_TIMES.append((label or "%s restart %d" % (self.name, self.starts), secs))
        return secs

    def log_tail(self, n=3000):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
            return data[-n:].decode("utf-8", "replace")
        except OSError:
            return "(no log)"

    def cleanup(self):
        self.kill()
        if not os.environ.get("SHOAL_E2E_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- HTTP --
    def _reset_conns(self):
        self._local = threading.local()

    def _conn(self, timeout):
        c = getattr(self._local, "conn", None)
        if c is None or getattr(self._local, "port", None) != self.port:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            self._local.conn, self._local.port = c, self.port
        c.timeout = timeout
        if c.sock is not None:
            c.sock.settimeout(timeout)
        return c

    def _drop_conn(self):
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
        self._local.conn = None

    def request(self, method, path, body=None, auth="admin", headers=None, timeout=30,
                raw=False):
        """auth: 'admin' (Bearer), 'write' (Basic write key), None, or a full header value."""
        h = {}
        if auth == "admin":
            h["Authorization"] = "Bearer " + (self.admin_token or "")
        elif auth == "write":
            h["Authorization"] = basic(self.write_key or "")
        elif auth:
            h["Authorization"] = auth
        data = body
        if body is not None and not isinstance(body, (bytes, bytearray)) and not raw:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        if headers:
            h.update(headers)
        for attempt in range(2):
            conn = self._conn(timeout)
            try:
                send_err = None
                try:
                    conn.request(method, path, body=data, headers=h)
                except (BrokenPipeError, ConnectionResetError) as e:
                    # The server may answer (413) and close before reading the whole body.
                    send_err = e
                try:
                    r = conn.getresponse()
                except Exception:
                    if send_err is not None:
                        raise send_err
                    raise
                payload = r.read()
                resp = Resp(method, path, body, r.status,
                            {k.lower(): v for k, v in r.getheaders()}, payload)
                if r.will_close:
                    self._drop_conn()
                return resp
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.CannotSendRequest, http.client.ResponseNotReady):
                self._drop_conn()
                if attempt == 1:
                    raise
            except Exception:
                self._drop_conn()
                raise

    # -- convenience --
    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def call(self, kind, msg, **kw):
        msg = dict(msg)
        msg.setdefault("messageId", mid())
        return self.post("/v1/" + kind, msg, auth=kw.pop("auth", "write"), **kw)

    def batch(self, calls, **extra):
        body = {"batch": calls}
        auth = extra.pop("auth", "write")
        body.update(extra)
        return self.post("/v1/batch", body, auth=auth)

    def advance(self, dur):
        r = self.post("/v1/debug/clock", {"advance": dur})
        if r.status == 200 and r.json and "now" in r.json:
            self.now = parse_iso(r.json["now"])
        return r

    def set_clock(self, t):
        r = self.post("/v1/debug/clock", {"set": t})
        if r.status == 200 and r.json and "now" in r.json:
            self.now = parse_iso(r.json["now"])
        return r

    def changes(self, segment=None, after=0, limit=None, wait=0, timeout=None):
        q = [("after", str(after)), ("wait", str(wait))]
        for s in ([segment] if isinstance(segment, str) else (segment or [])):
            q.append(("segment", s))
        if limit is not None:
            q.append(("limit", str(limit)))
        path = "/v1/changes?" + urllib.parse.urlencode(q)
        return self.get(path, headers={"Accept": "application/json"},
                        timeout=timeout or (wait + 15))

    def all_changes(self, segment=None, after=0):
        """The whole log after `after` (optionally filtered), by paging the long-poll API."""
        out = []
        for _ in range(10000):
            r = self.changes(segment, after=after, limit=1000, wait=0)
            if r.status != 200:
                raise AssertionError("change log: " + r.describe())
            ch = r.json["changes"]
            out += ch
            if not ch:
                return out
            after = r.json["next"]
        raise AssertionError("change log paging did not end")

    def last_seq(self):
        ch = self.all_changes()
        return ch[-1]["seq"] if ch else 0

    def members(self, seg):
        r = self.get("/v1/segments/%s/members?limit=10000" % q(seg))
        if r.status != 200:
            raise AssertionError(r.describe())
        return r.json["members"]

    def count(self, seg):
        r = self.get("/v1/segments/%s/count" % q(seg))
        if r.status != 200:
            raise AssertionError(r.describe())
        return r.json["count"]

    def create_segment(self, name, definition):
        r = self.post("/v1/segments", {"name": name, "definition": definition})
        if r.status != 201:
            raise AssertionError("create segment: " + r.describe())
        return r.json

    def profile_segments(self, pid):
        r = self.get("/v1/profiles/%s/segments" % q(pid))
        if r.status != 200:
            raise AssertionError(r.describe())
        return r.json["segments"]

    def traits(self, pid):
        r = self.get("/v1/profiles/%s" % q(pid))
        if r.status != 200:
            raise AssertionError(r.describe())
        return r.json["traits"]


def q(s):
    return urllib.parse.quote(s, safe="")


class SSE:
    """A server-sent-events subscription read by a background thread."""

    def __init__(self, srv, path, headers=None):
        self.conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
        h = {"Authorization": "Bearer " + srv.admin_token}
        if headers is not None:
            h.update(headers)
        else:
            h["Accept"] = "text/event-stream"
        self.conn.request("GET", path, headers=h)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = {k.lower(): v for k, v in self.resp.getheaders()}
        self.events = queue.Queue()
        self.error = None
        if self.status == 200:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        else:
            self.body = self.resp.read()

    def _run(self):
        cur = {}
        try:
            while True:
                line = self.resp.readline()
                if not line:
                    break
                line = line.decode("utf-8").rstrip("\r\n")
                if line == "":
                    if "data" in cur:
                        self.events.put(cur)
                    cur = {}
                    continue
                if line.startswith(":"):
                    continue
                field, _, value = line.partition(":")
                if value.startswith(" "):
                    value = value[1:]
                if field == "data" and "data" in cur:
                    cur["data"] += "\n" + value
                else:
                    cur[field] = value
        except Exception as e:  # socket closed by close()
            self.error = e
        finally:
            self.events.put(None)

    def take(self, n, timeout=10):
        """The next n events as (id, event, Change); fewer if the stream ends or times out."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                ev = self.events.get(timeout=left)
            except queue.Empty:
                break
            if ev is None:
                self.events.put(None)
                break
            out.append((ev.get("id"), ev.get("event"), json.loads(ev["data"])))
        return out

    def close(self):
        try:
            if self.conn.sock:
                self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()


# --------------------------------------------------------------------------------------------
# Base class
# --------------------------------------------------------------------------------------------

class ServerTest(unittest.TestCase):
    CLOCK = CLOCK0
    EXTRA_ARGS = ()
    srv = None

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(cls.__name__, clock=cls.CLOCK, extra_args=cls.EXTRA_ARGS)
        secs = cls.srv.start()
        RESTART_TIMES.append(("%s first start" % cls.__name__, secs))

    @classmethod
    def tearDownClass(cls):
        if cls.srv:
            cls.srv.cleanup()

    # -- assertions that print the request and the answer --
    def expect(self, r, status, what=""):
        if isinstance(status, int):
            status = (status,)
        if r.status not in status:
            self.fail("%s expected %s, got: %s" % (what, "/".join(map(str, status)),
                                                   r.describe()))
        return r

    def expect_error(self, r, status, code, what=""):
        self.expect(r, status, what)
        self.assertEqual(r.err_code(), code, "%s: error code; %s" % (what, r.describe()))
        self.assertIsInstance((r.json or {}).get("error", {}).get("message"), str,
                              "error.message missing: " + r.describe())

    def ok(self, r, what=""):
        return self.expect(r, 200, what)

    def tag(self):
        """A short unique prefix for ids and names of this test."""
        return self._testMethodName.replace("test_", "")[:24].replace("-", "_")

    def assertSub(self, r, expected):
        got = {k: (r.json or {}).get(k) for k in expected}
        self.assertEqual(got, expected, r.describe())

    def seg_changes(self, seg, after=0):
        return [c for c in self.srv.all_changes(seg, after=after)]

    def assert_verify_ok(self):
        return check_verify(self, self.srv)


def check_verify(tc, srv, what="verify"):
    """GET /v1/debug/verify on a quiet server: live == reference == persisted for every segment."""
    r = srv.get("/v1/debug/verify")
    tc.assertEqual(r.status, 200, r.describe())
    tc.assertTrue(r.json.get("ok"), "%s: not ok: %s" % (what, r.describe()))
    for name, v in r.json.get("segments", {}).items():
        tc.assertTrue(v.get("live") == v.get("reference") == v.get("persisted"),
                      "%s: segment %s live/reference/persisted differ: %s"
                      % (what, name, r.describe()))
    return r.json


def past(ms_before_clock0):
    return iso(T_CLOCK0 - ms_before_clock0)


# --------------------------------------------------------------------------------------------
# Ingest
# --------------------------------------------------------------------------------------------

class IngestTest(ServerTest):

    def test_identify_basic_auth_sets_traits(self):
        r = self.srv.call("identify", {"userId": "ing-u1", "traits": {"plan": "pro", "age": 30},
                                       "timestamp": past(H)})
        self.ok(r, "identify")
        self.assertEqual(r.json.get("success"), True, r.describe())
        t = self.srv.traits("ing-u1")
        self.assertEqual(t.get("plan"), "pro")
        self.assertEqual(t.get("age"), 30)

    def test_write_key_in_body(self):
        m = mid()
        r = self.srv.post("/v1/track", {"userId": "ing-body", "event": "Body Key",
                                        "timestamp": past(H), "writeKey": WRITE_KEY,
                                        "messageId": m}, auth=None)
        self.ok(r, "track with body writeKey, no Authorization header")
        r = self.srv.post("/v1/batch", {"writeKey": WRITE_KEY, "batch": [
            {"type": "identify", "userId": "ing-body", "traits": {"k": "body"},
             "timestamp": past(H), "messageId": mid()}]}, auth=None)
        self.ok(r, "batch with body writeKey")
        self.assertEqual(self.srv.traits("ing-body").get("k"), "body")
        self.assertTrue(self.ok(self.srv.get("/v1/debug/messages/" + q(m))).json["stored"])

    def test_wrong_or_missing_write_key_401(self):
        cases = [
            ("wrong basic", basic("nope"), {}),
            ("missing", None, {}),
            ("wrong body key", None, {"writeKey": "nope"}),
            ("admin bearer on ingest", "Bearer " + ADMIN_TOKEN, {}),
        ]
        for label, auth, extra in cases:
            m = mid()
            body = {"userId": "ing-401", "event": "X", "messageId": m, "timestamp": past(H)}
            body.update(extra)
            r = self.srv.post("/v1/track", body, auth=auth)
            self.expect_error(r, 401, "unauthorized", label)
            r2 = self.srv.post("/v1/batch", dict(extra, batch=[body]), auth=auth)
            self.expect_error(r2, 401, "unauthorized", label + " (batch)")
            st = self.ok(self.srv.get("/v1/debug/messages/" + q(m)))
            self.assertFalse(st.json["stored"], "%s: rejected call was stored" % label)
        self.expect(self.srv.get("/v1/profiles/ing-401"), 404, "profile of rejected calls")

    def test_admin_endpoints_need_bearer(self):
        paths = [("GET", "/v1/segments"), ("GET", "/v1/lists"), ("GET", "/v1/profiles/ing-u1"),
                 ("GET", "/v1/changes?after=0&wait=0"), ("GET", "/v1/debug/verify"),
                 ("POST", "/v1/segments"), ("POST", "/v1/segments/validate"),
                 ("DELETE", "/v1/profiles/ing-u1"), ("POST", "/v1/debug/clock")]
        for method, path in paths:
            for label, auth in [("no credential", None), ("write key", "write"),
                                ("wrong token", "Bearer wrong"),
                                ("token as Basic", basic(ADMIN_TOKEN))]:
                body = {"name": "x_unauth", "definition": "plan = \"x\""} \
                    if method == "POST" else None
                r = self.srv.request(method, path, body, auth=auth)
                self.expect_error(r, 401, "unauthorized", "%s %s with %s" % (method, path, label))
        self.ok(self.srv.get("/v1/segments"), "with the admin token")
        self.expect(self.srv.get("/v1/segments/x_unauth"), 404, "nothing was created")

    def test_all_call_types_single_endpoints(self):
        u = "ing-types"
        self.srv.create_segment("ing_page", 'performed "Page Viewed" where name = "Pricing"')
        self.srv.create_segment("ing_screen", 'performed "Screen Viewed" where name = "Settings"')
        self.srv.create_segment("ing_track", 'performed "Signed Up" where source = "ads"')
        ids = {}
        calls = [
            ("identify", {"userId": u, "traits": {"email": "a@b.c"}}),
            ("track", {"userId": u, "event": "Signed Up", "properties": {"source": "ads"}}),
            ("page", {"userId": u, "name": "Pricing", "properties": {"path": "/pricing"}}),
            ("screen", {"userId": u, "name": "Settings"}),
            ("group", {"userId": u, "groupId": "acme", "traits": {"name": "Acme"}}),
            ("alias", {"userId": u, "previousId": "anon-123"}),
        ]
        for kind, msg in calls:
            m = mid()
            ids[kind] = m
            msg = dict(msg, messageId=m, timestamp=past(H))
            r = self.srv.call(kind, msg)
            self.ok(r, kind)
            self.assertEqual((r.json or {}).get("success"), True, r.describe())
        for kind, m in ids.items():
            r = self.ok(self.srv.get("/v1/debug/messages/" + q(m)))
            self.assertTrue(r.json["stored"], "%s call %s not stored" % (kind, m))
        segs = self.srv.profile_segments(u)
        for s in ("ing_page", "ing_screen", "ing_track"):
            self.assertIn(s, segs, "profile %s segments %s" % (u, segs))
        self.assertEqual(self.srv.traits(u).get("email"), "a@b.c")

    def test_anonymous_id_profile(self):
        r = self.srv.call("identify", {"anonymousId": "anon-only-1", "traits": {"plan": "anon"},
                                       "timestamp": past(H)})
        self.ok(r, "identify with only anonymousId")
        self.assertEqual(self.srv.traits("anon-only-1").get("plan"), "anon")

    def test_batch_mixed_types_counts(self):
        u = "ing-batch"
        calls = [
            {"type": "identify", "userId": u, "traits": {"plan": "batch"}, "messageId": mid(),
             "timestamp": past(2 * H)},
            {"type": "track", "userId": u, "event": "Batched", "messageId": mid(),
             "timestamp": past(H)},
            {"type": "page", "userId": u, "name": "Home", "messageId": mid(),
             "timestamp": past(H)},
        ]
        r = self.ok(self.srv.batch(calls), "batch")
        self.assertEqual(r.json.get("success"), True, r.describe())
        self.assertEqual(r.json.get("accepted"), 3, r.describe())
        self.assertEqual(r.json.get("duplicates"), 0, r.describe())
        self.srv.create_segment("ing_batched", 'performed "Batched" and plan = "batch"')
        self.assertEqual(self.srv.members("ing_batched"), [u])

    def test_batch_gzip_body(self):
        # The RudderStack node SDK gzips every batch by default (Content-Encoding: gzip); "SDKs
        # work unchanged" implies the server must accept it.
        body = {"batch": [{"type": "identify", "userId": "ing-gzip", "traits": {"z": 1},
                           "messageId": mid(), "timestamp": past(H)}]}
        data = gzip.compress(json.dumps(body).encode())
        r = self.srv.post("/v1/batch", data, auth="write",
                          headers={"Content-Type": "application/json",
                                   "Content-Encoding": "gzip"})
        self.ok(r, "gzip batch")
        self.assertEqual(self.srv.traits("ing-gzip").get("z"), 1)

    def test_batch_chunked_transfer_encoding(self):
        body = json.dumps({"batch": [{"type": "identify", "userId": "ing-chunked",
                                      "traits": {"c": 1}, "messageId": mid(),
                                      "timestamp": past(H)}]}).encode()
        conn = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=30)
        conn.request("POST", "/v1/batch", body=iter([body[:10], body[10:]]), encode_chunked=True,
                     headers={"Authorization": basic(WRITE_KEY),
                              "Content-Type": "application/json",
                              "Transfer-Encoding": "chunked"})
        r = conn.getresponse()
        data = r.read()
        conn.close()
        self.assertEqual(r.status, 200, "chunked /v1/batch -> %d %s" % (r.status, data[:300]))
        self.assertEqual(self.srv.traits("ing-chunked").get("c"), 1)

    def test_timestamp_with_offset(self):
        # 2026-11-01T00:30:00+01:00 is clock0 - 30 min
        self.srv.create_segment("ing_tz_45", 'performed "Tz Event" within 45m')
        self.srv.create_segment("ing_tz_15", 'performed "Tz Event" within 15m')
        self.ok(self.srv.call("track", {"userId": "ing-tz", "event": "Tz Event",
                                        "timestamp": "2026-11-01T00:30:00+01:00"}))
        self.assertEqual(self.srv.members("ing_tz_45"), ["ing-tz"])
        self.assertEqual(self.srv.members("ing_tz_15"), [])

    def test_content_type_text_plain_or_missing(self):
        # analytics.js beacons send text/plain; curl users often send no Content-Type
        for label, hdrs in [("text/plain", {"Content-Type": "text/plain"}), ("none", {})]:
            uid = "ing-ct-" + label.replace("/", "-")
            body = json.dumps({"userId": uid, "traits": {"ct": label}, "messageId": mid(),
                               "timestamp": past(H)}).encode()
            r = self.srv.post("/v1/identify", body, auth="write", headers=hdrs)
            self.ok(r, "Content-Type %s" % label)
            self.assertEqual(self.srv.traits(uid).get("ct"), label)

    def test_pipelined_requests(self):
        sock = socket.create_connection(("127.0.0.1", self.srv.port), timeout=10)
        req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        sock.sendall(req * 3)
        data = b""
        deadline = time.monotonic() + 5
        while data.count(b"HTTP/1.1 200") < 3 and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        sock.close()
        self.assertEqual(data.count(b"HTTP/1.1 200"), 3, "3 pipelined GETs -> %r" % data[:600])

    def test_invalid_json_400(self):
        r = self.srv.post("/v1/track", b'{"userId": "x", "event": ', auth="write",
                          headers={"Content-Type": "application/json"})
        self.expect_error(r, 400, "invalid_json", "truncated JSON")
        r = self.srv.post("/v1/batch", {"batch": "notalist"}, auth="write")
        self.expect(r, 400, "batch is not a list")
        r = self.srv.post("/v1/track", {"userId": "ing-bad", "messageId": mid()}, auth="write")
        self.expect_error(r, 400, "invalid_message", "track without event")

    def test_unknown_route_404_and_wrong_method_405(self):
        self.expect_error(self.srv.get("/v1/nope"), 404, "not_found", "unknown route")
        self.expect_error(self.srv.request("DELETE", "/v1/segments"), 405,
                          "method_not_allowed", "DELETE /v1/segments")
        self.expect_error(self.srv.get("/v1/track", auth="write"), 405, "method_not_allowed",
                          "GET /v1/track")

    def test_keep_alive_many_requests_one_connection(self):
        c = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=10)
        for i in range(20):
            c.request("GET", "/healthz")
            r = c.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            self.assertFalse(r.will_close,
                             "server closed a keep-alive connection at request %d" % i)
        c.close()


# --------------------------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------------------------

class LimitsTest(ServerTest):

    def test_call_over_32kb_rejected_naming_index(self):
        big = {"type": "track", "userId": "lim-big", "event": "Big", "messageId": mid(),
               "timestamp": past(H), "properties": {"blob": "x" * 33000}}
        calls = [
            {"type": "identify", "userId": "lim-ok", "traits": {"a": 1}, "messageId": mid(),
             "timestamp": past(H)},
            big,
            {"type": "track", "userId": "lim-ok", "event": "Small", "messageId": mid(),
             "timestamp": past(H)},
        ]
        r = self.srv.batch(calls)
        self.expect(r, 400, "batch with a 33 KB call at index 1")
        j = r.json or {}
        errs = j.get("errors") or []
        by_errors = any(e.get("index") == 1 for e in errs)
        err = j.get("error") or {}
        by_error = err.get("code") == "limit" and "1" in err.get("message", "")
        self.assertTrue(by_errors or by_error,
                        "the answer must name index 1: " + r.describe())
        self.assertIn("limit", r.text, "code limit expected: " + r.describe())
        st = self.ok(self.srv.get("/v1/debug/messages/" + q(big["messageId"])))
        self.assertFalse(st.json["stored"], "the oversized call was stored")
        # single call
        r = self.srv.call("track", {"userId": "lim-big", "event": "Big", "timestamp": past(H),
                                    "properties": {"blob": "y" * 33000}})
        self.expect_error(r, 400, "limit", "single 33 KB track")
        self.expect(self.srv.get("/v1/profiles/lim-big"), 404, "oversized calls made a profile")

    def test_call_just_under_32kb_accepted(self):
        r = self.srv.call("track", {"userId": "lim-31k", "event": "Big", "timestamp": past(H),
                                    "properties": {"blob": "z" * 31000}})
        self.ok(r, "31 KB track")

    def test_body_over_500kb_413(self):
        first = mid()
        calls = [{"type": "track", "userId": "lim-413", "event": "Bulk", "timestamp": past(H),
                  "messageId": first if i == 0 else mid(),
                  "properties": {"pad": "p" * 20000}} for i in range(27)]
        r = self.srv.batch(calls)  # ~540 KB
        self.expect_error(r, 413, "limit", "540 KB body")
        st = self.ok(self.srv.get("/v1/debug/messages/" + q(first)))
        self.assertFalse(st.json["stored"], "a call of a 413 request was stored")

    def test_body_under_500kb_accepted(self):
        calls = [{"type": "track", "userId": "lim-480", "event": "Bulk", "timestamp": past(H),
                  "messageId": mid(), "properties": {"pad": "p" * 19500}} for i in range(24)]
        r = self.ok(self.srv.batch(calls), "~470 KB body")
        self.assertEqual(r.json.get("accepted"), 24, r.describe())

    def test_more_than_2500_calls_400(self):
        calls = [{"type": "track", "userId": "lim-n%d" % (i % 7), "event": "N",
                  "messageId": "n2501-%d" % i} for i in range(2501)]
        r = self.srv.batch(calls)
        self.expect_error(r, 400, "limit", "2501 calls")
        st = self.ok(self.srv.get("/v1/debug/messages/n2501-0"))
        self.assertFalse(st.json["stored"], "a call of a rejected 2501-call batch was stored")

    def test_exactly_2500_calls_accepted(self):
        calls = [{"type": "track", "userId": "lim-m%d" % (i % 7), "event": "N",
                  "messageId": "n2500-%d" % i, "timestamp": past(H)} for i in range(2500)]
        r = self.ok(self.srv.batch(calls), "2500 calls")
        self.assertEqual(r.json.get("accepted"), 2500, r.describe())

    def test_malformed_call_in_batch_keeps_the_others(self):
        u = "lim-partial"
        good = [mid(), mid(), mid()]
        bad_ids = [mid(), mid()]
        calls = [
            {"type": "identify", "userId": u, "traits": {"plan": "kept"}, "messageId": good[0],
             "timestamp": past(2 * H)},
            {"type": "track", "userId": u, "messageId": bad_ids[0], "timestamp": past(H)},
            {"type": "track", "userId": u, "event": "Kept Event", "messageId": good[1],
             "timestamp": past(H)},
            {"type": "track", "event": "No Id", "messageId": bad_ids[1], "timestamp": past(H)},
            {"type": "page", "userId": u, "name": "Kept Page", "messageId": good[2],
             "timestamp": past(H)},
        ]
        r = self.expect(self.srv.batch(calls), 400, "batch with 2 malformed calls")
        j = r.json or {}
        self.assertEqual(j.get("success"), False, r.describe())
        self.assertEqual(j.get("accepted"), 3, r.describe())
        self.assertEqual(j.get("duplicates"), 0, r.describe())
        errs = j.get("errors") or []
        self.assertEqual(sorted(e.get("index") for e in errs), [1, 3], r.describe())
        e1 = [e for e in errs if e.get("index") == 1][0]
        self.assertEqual(e1.get("field"), "event", r.describe())
        self.assertIsInstance(e1.get("message"), str)
        # the valid calls are stored and applied
        self.assertEqual(self.srv.traits(u).get("plan"), "kept")
        self.srv.create_segment("lim_kept",
                                'performed "Kept Event" and performed "Page Viewed" '
                                'where name = "Kept Page"')
        self.assertEqual(self.srv.members("lim_kept"), [u])
        for m in good:
            self.assertTrue(self.ok(self.srv.get("/v1/debug/messages/" + q(m))).json["stored"])
        for m in bad_ids:
            self.assertFalse(self.ok(self.srv.get("/v1/debug/messages/" + q(m))).json["stored"])


# --------------------------------------------------------------------------------------------
# Deduplication and clock skew
# --------------------------------------------------------------------------------------------

class DedupTest(ServerTest):

    def test_same_batch_twice_counts_once(self):
        u = "dd-u1"
        self.srv.create_segment("dd_twice_live", 'performed "Dup" at least 2 times')
        calls = [
            {"type": "track", "userId": u, "event": "Dup", "messageId": "dd-m1",
             "timestamp": past(H)},
            {"type": "identify", "userId": u, "traits": {"n": 1}, "messageId": "dd-m2",
             "timestamp": past(H)},
        ]
        r1 = self.ok(self.srv.batch(calls), "first send")
        self.assertEqual((r1.json["accepted"], r1.json["duplicates"]), (2, 0), r1.describe())
        r2 = self.ok(self.srv.batch(calls), "retry of the same batch")
        self.assertEqual(r2.json.get("success"), True, r2.describe())
        self.assertEqual((r2.json["accepted"], r2.json["duplicates"]), (0, 2), r2.describe())
        self.srv.create_segment("dd_twice_backfill", 'performed "Dup" at least 2 times')
        self.srv.create_segment("dd_once", 'performed "Dup" exactly 1 times')
        self.assertEqual(self.srv.members("dd_twice_live"), [], "incremental path")
        self.assertEqual(self.srv.members("dd_twice_backfill"), [], "backfill path")
        self.assertEqual(self.srv.members("dd_once"), [u])
        self.assert_verify_ok()

    def test_duplicate_inside_one_batch(self):
        u = "dd-u2"
        c = {"type": "track", "userId": u, "event": "Dup2", "messageId": "dd-in-1",
             "timestamp": past(H)}
        r = self.ok(self.srv.batch([c, dict(c)]), "one batch with the same messageId twice")
        self.assertEqual((r.json["accepted"], r.json["duplicates"]), (1, 1), r.describe())
        self.srv.create_segment("dd_in_batch", 'performed "Dup2" at least 2 times')
        self.assertEqual(self.srv.count("dd_in_batch"), 0)

    def test_single_call_retry_counts_once(self):
        u = "dd-u3"
        body = {"userId": u, "event": "Dup3", "messageId": "dd-single-1", "timestamp": past(H)}
        self.ok(self.srv.call("track", body))
        self.ok(self.srv.call("track", body), "retried single call")
        self.srv.create_segment("dd_single", 'performed "Dup3" at least 2 times')
        self.assertEqual(self.srv.count("dd_single"), 0)

    def test_same_message_id_different_profiles_counts_once(self):
        # messageId is the idempotency key, whatever the payload.
        self.ok(self.srv.call("track", {"userId": "dd-u4", "event": "Dup4",
                                        "messageId": "dd-same", "timestamp": past(H)}))
        self.ok(self.srv.call("track", {"userId": "dd-u4", "event": "Dup4",
                                        "messageId": "dd-same", "timestamp": past(2 * H)}))
        self.srv.create_segment("dd_payload", 'performed "Dup4" at least 2 times')
        self.assertEqual(self.srv.count("dd_payload"), 0)

    def explain(self, seg, uid):
        r = self.srv.get("/v1/profiles/%s/explain?segment=%s" % (q(uid), q(seg)))
        return r.describe()

    def _skew_segments(self, event):
        name = event.lower().replace(" ", "_")
        self.srv.create_segment(name + "_15m", 'performed "%s" within 15m' % event)
        self.srv.create_segment(name + "_5m", 'performed "%s" within 5m' % event)
        return name + "_15m", name + "_5m"

    def test_sent_at_skew_corrected_in_batch(self):
        # The client clock is 1 h ahead: sentAt = now + 1h, the event 10 min before sending.
        # Corrected: timestamp = receivedAt - (sentAt - timestamp) = now - 10 min.
        s15, s5 = self._skew_segments("Skew Batch")
        now = self.srv.now
        r = self.ok(self.srv.batch([{"type": "track", "userId": "dd-skew1",
                                     "event": "Skew Batch", "messageId": mid(),
                                     "timestamp": iso(now + 50 * M)}], sentAt=iso(now + H)))
        self.assertEqual(self.srv.members(s15), ["dd-skew1"],
                         "corrected time now-10m must be inside 'within 15m'; %s; %s"
                         % (r.describe(), self.explain(s15, "dd-skew1")))
        self.assertEqual(self.srv.members(s5), [], "corrected time now-10m is outside 'within 5m'")

    def test_sent_at_skew_corrected_single_call(self):
        s15, s5 = self._skew_segments("Skew Single")
        now = self.srv.now
        r = self.ok(self.srv.call("track", {"userId": "dd-skew2", "event": "Skew Single",
                                            "timestamp": iso(now + 50 * M),
                                            "sentAt": iso(now + H)}))
        self.assertEqual(self.srv.members(s15), ["dd-skew2"],
                         "%s; %s" % (r.describe(), self.explain(s15, "dd-skew2")))
        self.assertEqual(self.srv.members(s5), [])

    def test_sent_at_in_the_past_shifts_forward(self):
        # Client clock 2 days behind: sentAt = now - 2d, event 3 min before sending -> now - 3m.
        s15, s5 = self._skew_segments("Skew Late")
        now = self.srv.now
        r = self.ok(self.srv.batch([{"type": "track", "userId": "dd-skew3", "event": "Skew Late",
                                     "messageId": mid(), "timestamp": iso(now - 2 * D - 3 * M)}],
                                   sentAt=iso(now - 2 * D)))
        self.assertEqual(self.srv.members(s5), ["dd-skew3"],
                         "%s; %s" % (r.describe(), self.explain(s5, "dd-skew3")))

    def test_no_sent_at_no_correction(self):
        s15, s5 = self._skew_segments("No Skew")
        now = self.srv.now
        self.ok(self.srv.call("track", {"userId": "dd-skew4", "event": "No Skew",
                                        "timestamp": iso(now + 50 * M)}))
        self.assertEqual(self.srv.members(s15), [], "a future event must not count yet")


# --------------------------------------------------------------------------------------------
# Segments
# --------------------------------------------------------------------------------------------

def identify(srv, uid, traits, ts=None):
    r = srv.call("identify", {"userId": uid, "traits": traits,
                              "timestamp": ts or past(H)})
    if r.status != 200:
        raise AssertionError(r.describe())
    return r


class SegmentsTest(ServerTest):

    def test_create_get_canonical_and_conflict(self):
        r = self.srv.post("/v1/segments", {"name": "sg_canon",
                                           "definition": 'PERFORMED "Order Completed" WITHIN 24h'})
        self.expect(r, 201, "create")
        s = r.json
        for k in ("name", "definition", "size", "last_seq", "created_at", "updated_at",
                  "last_change_at"):
            self.assertIn(k, s, "Segment field %s missing: %s" % (k, r.describe()))
        self.assertEqual(s["name"], "sg_canon")
        self.assertEqual(s["definition"], 'performed "Order Completed" within 1d')
        self.assertEqual(s["size"], 0)
        self.assertIsNone(s["last_change_at"], "no change yet: " + r.describe())
        self.assertEqual(parse_iso(s["created_at"]), T_CLOCK0, "created_at on the virtual clock")
        g = self.ok(self.srv.get("/v1/segments/sg_canon"))
        self.assertEqual(g.json["definition"], s["definition"])
        r = self.srv.post("/v1/segments", {"name": "sg_canon", "definition": 'plan = "x"'})
        self.expect_error(r, 409, "already_exists", "same name again")
        self.expect_error(self.srv.get("/v1/segments/sg_nope"), 404, "not_found", "unknown")
        r = self.srv.post("/v1/segments", {"name": "sg_bad", "definition": "performed within"})
        self.expect_error(r, 400, "invalid_definition", "bad text on create")
        self.expect(self.srv.get("/v1/segments/sg_bad"), 404, "invalid segment saved")
        r = self.srv.post("/v1/segments", {"definition": 'plan = "x"'})
        self.expect(r, 400, "create without name")

    def test_validate_valid_and_positions(self):
        r = self.ok(self.srv.post("/v1/segments/validate",
                                  {"definition": "plan = \"pro\"  AND  age BETWEEN 25 AND 40"}))
        self.assertEqual((r.json.get("valid"), r.json.get("canonical")),
                         (True, 'plan = "pro" and age between 25 and 40'), r.describe())
        for text, line, col in [('performed "X" within 30', 1, 22),
                                ('plan = "pro"\nand age >', 2, 10),
                                ('# comment\n  plan = = 3', 2, 10)]:
            r = self.srv.post("/v1/segments/validate", {"definition": text})
            self.expect_error(r, 400, "invalid_definition", "validate %r" % text)
            e = r.json["error"]
            self.assertEqual((e.get("line"), e.get("column")), (line, col),
                             "position of the error in %r: %s" % (text, r.describe()))
            self.assertTrue(e["message"].startswith("%d:%d" % (line, col)), r.describe())
        r = self.srv.post("/v1/segments/validate", {"definition": 'in segment "sg_missing"'})
        self.expect_error(r, 400, "invalid_definition", "unknown segment reference")

    def test_estimate_equals_count_after_creation(self):
        for i, plan in enumerate(["est", "est", "other", "est", None]):
            identify(self.srv, "sg-est-%d" % i, {"plan": plan, "tag": "est"})
        d = 'plan = "est" and tag = "est"'
        r = self.ok(self.srv.post("/v1/segments/estimate", {"definition": d}))
        self.assertEqual(r.json.get("count"), 3, r.describe())
        self.assertIsInstance(r.json.get("millis"), (int, float), r.describe())
        names = [s["name"] for s in self.ok(self.srv.get("/v1/segments")).json["segments"]]
        self.assertNotIn("sg_est", names)
        s = self.srv.create_segment("sg_est", d)
        self.assertEqual(s["size"], 3)
        self.assertEqual(self.srv.count("sg_est"), 3)
        self.assertEqual(self.srv.members("sg_est"), ["sg-est-0", "sg-est-1", "sg-est-3"])
        r = self.srv.post("/v1/segments/estimate", {"definition": "plan ="})
        self.expect_error(r, 400, "invalid_definition", "estimate of bad text")

    def test_estimate_uses_the_virtual_clock(self):
        self.ok(self.srv.call("track", {"userId": "sg-estw", "event": "Est W",
                                        "timestamp": past(H)}))
        for d, n in [('performed "Est W" within 30m', 0), ('performed "Est W" within 2h', 1)]:
            r = self.ok(self.srv.post("/v1/segments/estimate", {"definition": d}))
            self.assertEqual(r.json["count"], n, r.describe())

    def test_name_with_space_round_trips(self):
        r = self.srv.post("/v1/segments", {"name": "sg with space", "definition": 'plan = "sp"'})
        if r.status == 400:
            self.assertEqual(r.err_code(), "invalid_argument", r.describe())
            return
        self.expect(r, 201, "create 'sg with space'")
        self.ok(self.srv.get("/v1/segments/" + q("sg with space")), "GET by encoded name")
        self.ok(self.srv.get("/v1/segments/%s/count" % q("sg with space")))

    def test_list_sorted_by_name(self):
        for n in ("sg_zeta", "sg_alpha", "sg_Mid", "sg_mid"):
            self.srv.create_segment(n, 'plan = "%s"' % n)
        r = self.ok(self.srv.get("/v1/segments"))
        names = [s["name"] for s in r.json["segments"]]
        self.assertEqual(names, sorted(names), r.describe())
        for n in ("sg_zeta", "sg_alpha", "sg_Mid", "sg_mid"):
            self.assertIn(n, names)
        for s in r.json["segments"]:
            self.assertIn("definition", s)
            self.assertIn("size", s)
        r = self.expect(self.srv.get("/v1/segments", auth=None), 401, "list without token")

    def test_members_paging_stable_under_changes(self):
        ids = ["pg-%03d" % i for i in range(40)]
        for uid in ids:
            identify(self.srv, uid, {"plan": "pg"})
        self.srv.create_segment("sg_paging", 'plan = "pg"')
        volatile = set(ids[4::5])  # these leave during the walk; the rest stay throughout
        stable = [i for i in ids if i not in volatile]
        vol = sorted(volatile)
        seen, cursor, pages, extra = [], None, 0, 0
        cursor_left = False
        while True:
            path = "/v1/segments/sg_paging/members?limit=7"
            if cursor is not None:
                path += "&cursor=" + q(cursor)
            r = self.ok(self.srv.get(path), "page %d" % pages)
            page = r.json["members"]
            self.assertLessEqual(len(page), 7)
            seen += page
            cursor = r.json["next_cursor"]
            pages += 1
            if cursor is None:
                break
            # between pages: one member behind the cursor leaves and one ahead leaves;
            # new members enter before and after the cursor
            behind = [v for v in vol if v <= cursor]
            ahead = [v for v in vol if v > cursor]
            for v in (behind[:1] + ahead[:1]):
                identify(self.srv, v, {"plan": "gone"}, ts=past(H - 1000))
                vol.remove(v)
            if not cursor_left and cursor in stable:
                # the cursor's own member leaves (it was returned, so it may go)
                identify(self.srv, cursor, {"plan": "gone"}, ts=past(H - 1000))
                stable.remove(cursor)
                cursor_left = True
            identify(self.srv, "pg-000-new%d" % extra, {"plan": "pg"})
            identify(self.srv, "pg-999-new%d" % extra, {"plan": "pg"})
            extra += 1
            self.assertLess(pages, 50, "paging does not end")
        self.assertEqual(len(seen), len(set(seen)), "a member returned twice: %s" % seen)
        self.assertEqual(seen, sorted(seen), "pages not in id order")
        for s in stable:
            self.assertEqual(seen.count(s), 1, "stable member %s returned %d times"
                             % (s, seen.count(s)))
        r = self.ok(self.srv.get("/v1/segments/sg_paging/members"))
        self.assertIsNone(r.json["next_cursor"])
        self.assertEqual(r.json["members"], self.srv.members("sg_paging"))
        self.expect(self.srv.get("/v1/segments/sg_nope/members"), 404)

    def test_count_and_404(self):
        identify(self.srv, "sg-cnt-1", {"plan": "cnt"})
        identify(self.srv, "sg-cnt-2", {"plan": "cnt"})
        self.srv.create_segment("sg_cnt", 'plan = "cnt"')
        self.assertEqual(self.srv.count("sg_cnt"), 2)
        identify(self.srv, "sg-cnt-3", {"plan": "cnt"})
        self.assertEqual(self.srv.count("sg_cnt"), 3)
        g = self.ok(self.srv.get("/v1/segments/sg_cnt")).json
        self.assertEqual(g["size"], 3)
        self.assertIsNotNone(g["last_change_at"])
        self.assertGreater(g["last_seq"], 0)
        self.expect_error(self.srv.get("/v1/segments/sg_nope/count"), 404, "not_found")

    def test_put_update_emits_exactly_the_diff(self):
        for u, p in (("sg-put-a", "a"), ("sg-put-b", "b"), ("sg-put-c", "c")):
            identify(self.srv, u, {"plan": "put-" + p})
        self.srv.create_segment("sg_put", 'plan in ("put-a", "put-b")')
        before = self.seg_changes("sg_put")
        self.assertEqual(sorted((c["profile"], c["kind"], c["cause"]) for c in before),
                         [("sg-put-a", "enter", "definition"), ("sg-put-b", "enter", "definition")])
        after = before[-1]["seq"]
        r = self.ok(self.srv.put("/v1/segments/sg_put",
                                 {"definition": 'plan IN ("put-b", "put-c")'}), "PUT")
        self.assertEqual(r.json["definition"], 'plan in ("put-b", "put-c")')
        self.assertEqual(r.json["size"], 2)
        diff = self.seg_changes("sg_put", after=after)
        self.assertEqual(sorted((c["profile"], c["kind"], c["cause"]) for c in diff),
                         [("sg-put-a", "exit", "definition"), ("sg-put-c", "enter", "definition")],
                         "changes after PUT: %s" % diff)
        self.assertEqual(sorted(c["segment_seq"] for c in diff), [3, 4])
        self.assertEqual(self.srv.members("sg_put"), ["sg-put-b", "sg-put-c"])
        # same definition again: 200 and nothing emitted
        last = diff[-1]["seq"]
        self.ok(self.srv.put("/v1/segments/sg_put", {"definition": 'plan in ("put-b", "put-c")'}))
        self.assertEqual(self.seg_changes("sg_put", after=last), [])
        # invalid definition: 400, the old one stays
        r = self.srv.put("/v1/segments/sg_put", {"definition": "plan in ("})
        self.expect_error(r, 400, "invalid_definition", "PUT bad text")
        self.assertEqual(self.ok(self.srv.get("/v1/segments/sg_put")).json["definition"],
                         'plan in ("put-b", "put-c")')
        # PUT of a new name creates
        r = self.srv.put("/v1/segments/sg_put_new", {"definition": 'plan = "put-a"'})
        self.expect(r, 201, "PUT new name")
        self.assertEqual(self.srv.members("sg_put_new"), ["sg-put-a"])

    def test_delete_emits_exits_and_409_when_referenced(self):
        identify(self.srv, "sg-del-1", {"plan": "del", "age": 5})
        identify(self.srv, "sg-del-2", {"plan": "del", "age": 1})
        self.srv.create_segment("sg_del_base", 'plan = "del"')
        self.srv.create_segment("sg_del_ref", 'in segment "sg_del_base" and age > 2')
        self.assertEqual(self.srv.members("sg_del_ref"), ["sg-del-1"])
        last = self.srv.last_seq()
        r = self.srv.delete("/v1/segments/sg_del_base")
        self.expect_error(r, 409, "failed_precondition", "delete of a referenced segment")
        self.assertEqual(self.srv.count("sg_del_base"), 2)
        self.assertEqual(self.srv.all_changes(after=last), [], "a refused delete emitted changes")
        self.expect(self.srv.delete("/v1/segments/sg_del_ref"), 204, "delete referencing")
        self.expect(self.srv.delete("/v1/segments/sg_del_base"), 204, "delete base")
        ch = self.srv.all_changes(after=last)
        got = sorted((c["segment"], c["profile"], c["kind"], c["cause"]) for c in ch)
        self.assertEqual(got, [("sg_del_base", "sg-del-1", "exit", "deleted"),
                               ("sg_del_base", "sg-del-2", "exit", "deleted"),
                               ("sg_del_ref", "sg-del-1", "exit", "deleted")])
        self.expect(self.srv.get("/v1/segments/sg_del_base"), 404)
        self.expect_error(self.srv.delete("/v1/segments/sg_del_base"), 404, "not_found")
        self.assertNotIn("sg_del_base", self.srv.profile_segments("sg-del-1"))

    def test_recreated_segment_continues_segment_seq(self):
        identify(self.srv, "sg-re-1", {"plan": "re"})
        self.srv.create_segment("sg_re", 'plan = "re"')
        self.expect(self.srv.delete("/v1/segments/sg_re"), 204)
        self.srv.create_segment("sg_re", 'plan = "re"')
        ch = self.seg_changes("sg_re")
        self.assertEqual([(c["segment_seq"], c["kind"]) for c in ch],
                         [(1, "enter"), (2, "exit"), (3, "enter")], ch)

    def test_cycle_rejected_409(self):
        self.srv.create_segment("sg_cy1", 'plan = "cy"')
        self.srv.create_segment("sg_cy2", 'in segment "sg_cy1"')
        r = self.srv.put("/v1/segments/sg_cy1", {"definition": 'in segment "sg_cy2"'})
        self.expect_error(r, 409, "failed_precondition", "PUT making a cycle")
        self.assertEqual(self.ok(self.srv.get("/v1/segments/sg_cy1")).json["definition"],
                         'plan = "cy"')

    def test_segment_history_sizes(self):
        identify(self.srv, "sg-hist-1", {"plan": "hist"})
        identify(self.srv, "sg-hist-2", {"plan": "hist"})
        self.srv.create_segment("sg_hist", 'plan = "hist"')
        identify(self.srv, "sg-hist-1", {"plan": "gone"}, ts=past(H - 1))
        for i in range(3, 9):
            identify(self.srv, "sg-hist-%d" % i, {"plan": "hist"})
        # openapi.yaml: one point per change (the size after it), thinned to `points`
        r = self.ok(self.srv.get("/v1/segments/sg_hist/history?from=%s&to=%s" % (
            q(iso(T_CLOCK0 - D)), q(iso(T_CLOCK0 + 1)))))
        pts = r.json.get("points")
        self.assertEqual([p["size"] for p in pts], [1, 2, 1, 2, 3, 4, 5, 6, 7], r.describe())
        for p in pts:
            self.assertEqual(parse_iso(p["time"]), T_CLOCK0, r.describe())
        r = self.ok(self.srv.get("/v1/segments/sg_hist/history?from=%s&to=%s&points=3" % (
            q(iso(T_CLOCK0 - D)), q(iso(T_CLOCK0 + 1)))))
        pts = r.json.get("points")
        self.assertTrue(1 <= len(pts) <= 3, r.describe())
        self.assertEqual(pts[-1]["size"], self.srv.count("sg_hist"), r.describe())
        r = self.ok(self.srv.get("/v1/segments/sg_hist/history?to=%s" % q(iso(T_CLOCK0 - 1))))
        self.assertEqual(r.json["points"], [], "no change before the creation: " + r.describe())


# --------------------------------------------------------------------------------------------
# Computed traits
# --------------------------------------------------------------------------------------------

class ComputedTraitsTest(ServerTest):

    def test_crud_profile_values_segments_and_restart(self):
        srv = self.srv
        r = srv.post("/v1/computed-traits", {"name": "ct_spend",
                                             "definition": 'SUM(total) OF "Order Completed"'})
        self.expect(r, 201, "create")
        self.assertEqual(r.json["definition"], 'sum(total) of "Order Completed"', r.describe())
        self.assertEqual(r.json["score"], False, r.describe())
        r = srv.post("/v1/computed-traits", {"name": "ct_spend", "definition": 'count of "X"'})
        self.expect_error(r, 409, "already_exists", "same name again")
        r = srv.post("/v1/computed-traits", {"name": "ct_bad", "definition": 'count of "X" within 3'})
        self.expect_error(r, 400, "invalid_definition", "bad text")
        r = srv.post("/v1/computed-traits", {"name": "bad name", "definition": 'count of "X"'})
        self.expect(r, 400, "bad name")
        self.expect_error(srv.get("/v1/computed-traits/ct_nope"), 404, "not_found", "unknown")
        for total in (100, 20.5):
            self.ok(srv.call("track", {"userId": "ct-u1", "event": "Order Completed",
                                       "properties": {"total": total}, "timestamp": past(H)}))
        p = self.ok(srv.get("/v1/profiles/ct-u1"))
        self.assertEqual(p.json.get("computed", {}).get("ct_spend"), 120.5, p.describe())
        self.expect(srv.post("/v1/segments", {"name": "ct_big", "definition":
                                              "computed.ct_spend > 100"}), 201, "segment")
        self.assertEqual(srv.members("ct_big"), ["ct-u1"])
        self.expect_error(srv.delete("/v1/computed-traits/ct_spend"), 409, "failed_precondition",
                          "delete while a segment reads it")
        r = srv.put("/v1/computed-traits/ct_score",
                    {"definition": '10 points if in segment "ct_big" - 2.5 points if plan = "x"'})
        self.expect(r, 201, "put creates")
        self.assertEqual(r.json["score"], True, r.describe())
        lst = self.ok(srv.get("/v1/computed-traits"))
        self.assertEqual([c["name"] for c in lst.json["computed_traits"]], ["ct_score", "ct_spend"])
        srv.restart(label="ComputedTraitsTest restart")
        p = self.ok(srv.get("/v1/profiles/ct-u1"))
        self.assertEqual(p.json.get("computed"), {"ct_score": 10, "ct_spend": 120.5}, p.describe())
        self.assertEqual(srv.members("ct_big"), ["ct-u1"])
        r = srv.put("/v1/computed-traits/ct_spend", {"definition": 'max(total) of "Order Completed"'})
        self.expect(r, 200, "put replaces")
        self.assertEqual(srv.members("ct_big"), [], "max is 100, not > 100")
        self.expect(srv.delete("/v1/computed-traits/ct_score"), 204, "delete")
        self.expect_error(srv.get("/v1/computed-traits/ct_score"), 404, "not_found", "deleted")

    def test_account_computed_traits_target_account_route_and_restart(self):
        srv = self.srv
        r = srv.post("/v1/computed-traits", {"name": "act_logins", "target": "accounts",
                                             "definition": 'count of "Logged In" within 30d'})
        self.expect(r, 201, "create an account computed trait")
        self.assertEqual(r.json["target"], "accounts", r.describe())
        r = srv.post("/v1/computed-traits", {"name": "act_bad", "target": "teams",
                                             "definition": 'count of "X"'})
        self.expect_error(r, 400, "invalid_argument", "unknown target")
        r = srv.post("/v1/computed-traits", {"name": "act_logins", "definition": 'count of "X"'})
        self.expect_error(r, 409, "already_exists", "one namespace for both targets")
        r = srv.put("/v1/computed-traits/act_score", {
            "target": "accounts",
            "definition": '20 points if at least 2 members (performed "Logged In" within 7d) '
                          '+ 30 points if performed "Demo Requested" within 30d '
                          '- 10 points if plan = "free"'})
        self.expect(r, 201, "put creates an account score")
        self.assertEqual((r.json["score"], r.json["target"]), (True, "accounts"), r.describe())
        r = srv.put("/v1/computed-traits/act_logins", {"target": "users",
                                                       "definition": 'count of "X"'})
        self.expect_error(r, 409, "failed_precondition", "the target cannot change")
        r = srv.post("/v1/segments", {"name": "act_user_seg",
                                      "definition": "computed.act_logins > 1"})
        self.expect_error(r, 400, "invalid_definition", "a user segment reads users' traits")
        self.assertIn("per account", r.json["error"]["message"], r.describe())
        now = srv.now
        for u in ("act-u1", "act-u2"):
            self.ok(srv.call("group", {"userId": u, "groupId": "act-acme", "traits": {"plan": "free"},
                                       "timestamp": iso(now - 2 * H)}))
            self.ok(srv.call("track", {"userId": u, "event": "Logged In",
                                       "context": {"groupId": "act-acme"},
                                       "timestamp": iso(now - H)}))
        a = self.ok(srv.get("/v1/accounts/act-acme"))
        self.assertEqual(a.json.get("computed"), {"act_logins": 2, "act_score": 10}, a.describe())
        p = self.ok(srv.get("/v1/profiles/act-u1"))
        self.assertNotIn("act_logins", p.json.get("computed", {}), p.describe())
        r = srv.post("/v1/segments", {"name": "act_engaged", "target": "accounts",
                                      "definition": "computed.act_score >= 10"})
        self.expect(r, 201, "an account segment reads it")
        self.assertEqual(srv.members("act_engaged"), ["act-acme"])
        self.expect_error(srv.delete("/v1/computed-traits/act_score"), 409, "failed_precondition",
                          "delete while an account segment reads it")
        lst = self.ok(srv.get("/v1/computed-traits"))
        targets = {c["name"]: c["target"] for c in lst.json["computed_traits"]}
        self.assertEqual((targets.get("act_logins"), targets.get("act_score")),
                         ("accounts", "accounts"), lst.describe())
        srv.restart(label="account computed traits restart")
        r = self.ok(srv.get("/v1/computed-traits/act_score"))
        self.assertEqual(r.json["target"], "accounts", "target recovered: " + r.describe())
        a = self.ok(srv.get("/v1/accounts/act-acme"))
        self.assertEqual(a.json.get("computed"), {"act_logins": 2, "act_score": 10}, a.describe())
        self.assertEqual(srv.members("act_engaged"), ["act-acme"])
        # An update keeps the target: the plan penalty goes, the score follows.
        r = srv.put("/v1/computed-traits/act_score", {
            "definition": '20 points if at least 2 members (performed "Logged In" within 7d)'})
        self.expect(r, 200, "put replaces")
        self.assertEqual(r.json["target"], "accounts", r.describe())
        a = self.ok(srv.get("/v1/accounts/act-acme"))
        self.assertEqual(a.json["computed"].get("act_score"), 20, a.describe())
        self.expect(srv.delete("/v1/segments/act_engaged"), 204, "delete the segment")
        self.expect(srv.delete("/v1/computed-traits/act_score"), 204, "then the trait")
        self.expect(srv.delete("/v1/computed-traits/act_logins"), 204, "delete")


class ComputedChangesTest(ServerTest):
    """Computed value changes: durable, numbered, streamed and paged (docs/api.md)."""

    def computed_log(self, after=0, trait=None):
        out = []
        for _ in range(1000):
            qs = [("after", str(after)), ("wait", "0"), ("limit", "1000")]
            if trait:
                qs.append(("trait", trait))
            r = self.ok(self.srv.get("/v1/computed-changes?" + urllib.parse.urlencode(qs),
                                     headers={"Accept": "application/json"}))
            out += r.json["changes"]
            if not r.json["changes"]:
                return out
            after = r.json["next"]
        self.fail("computed change paging did not end")

    def test_history_stream_time_restart_and_sigkill(self):
        s = self.srv
        self.expect(s.post("/v1/computed-traits", {"name": "cc_logins",
                                                   "definition": 'count of "Login" within 1d'}),
                    201, "create")
        sse = SSE(s, "/v1/computed-changes?trait=cc_logins")
        self.assertEqual(sse.status, 200)
        try:
            t1, t2 = s.now - H, s.now - 23 * H
            self.ok(s.call("track", {"userId": "cc-u1", "event": "Login", "messageId": "cc-m1",
                                     "timestamp": iso(t1)}))
            self.ok(s.call("track", {"userId": "cc-u1", "event": "Login", "messageId": "cc-m2",
                                     "timestamp": iso(t1)}))
            self.ok(s.call("track", {"userId": "cc-u2", "event": "Login", "messageId": "cc-m3",
                                     "timestamp": iso(t2)}))
            evs = sse.take(3, timeout=10)
        finally:
            sse.close()
        self.assertEqual(len(evs), 3, evs)
        for ident, name, c in evs:
            self.assertEqual(name, "computed_change")
            self.assertEqual(ident, str(c["seq"]))
        first = evs[0][2]
        self.assertEqual(first["trait"], "cc_logins")
        self.assertEqual(first["profile"], "cc-u1")
        self.assertEqual(first["target"], "users")
        self.assertEqual((first["old_value"], first["new_value"]), (0, 1))
        self.assertEqual(first["cause"], "event")
        self.assertEqual(first["cause_ref"], "cc-m1")
        self.assertEqual(first["event"], "Login")
        self.assertEqual(parse_iso(first["event_time"]), t1)
        parse_iso(first["processed_at"])
        self.assertEqual([c["trait_seq"] for _, _, c in evs], [1, 2, 3])
        self.assertEqual([(c["profile"], c["new_value"]) for _, _, c in evs],
                         [("cc-u1", 1), ("cc-u1", 2), ("cc-u2", 1)])

        # The history of the trait, a page at a time, and of one profile.
        r = self.ok(s.get("/v1/computed-traits/cc_logins/changes?after=0&limit=2"))
        self.assertEqual([c["trait_seq"] for c in r.json["changes"]], [1, 2], r.describe())
        self.assertEqual(r.json["trait"], "cc_logins")
        r = self.ok(s.get("/v1/computed-traits/cc_logins/changes?after=%d" % r.json["next"]))
        self.assertEqual([c["profile"] for c in r.json["changes"]], ["cc-u2"], r.describe())
        self.assertEqual(r.json["changes"][0], evs[2][2], "the stream and the history agree")
        r = self.ok(s.get("/v1/profiles/cc-u1/computed-history"))
        self.assertEqual([c["new_value"] for c in r.json["changes"]], [1, 2], r.describe())
        self.assertEqual(r.json["profile"], "cc-u1")

        # Time: cc-u2's login turns 1 day old 1 hour from now; the value drops at that instant.
        last = evs[-1][2]["seq"]
        self.ok(s.advance("2h"))
        ch = self.computed_log(after=last)
        self.assertEqual(len(ch), 1, ch)
        self.assertEqual((ch[0]["profile"], ch[0]["old_value"], ch[0]["new_value"],
                          ch[0]["cause"]), ("cc-u2", 1, 0, "time"))
        self.assertEqual(parse_iso(ch[0]["event_time"]), t2 + D + 1, "the first instant out")

        # Clean restart and SIGKILL at the same virtual instant: the log is intact, nothing is
        # emitted, and the numbering goes on.
        log = self.computed_log()
        s.restart(clock=iso(s.now), label="ComputedChangesTest restart")
        self.assertEqual(self.computed_log(), log, "the computed log after a clean restart")
        s.restart(clock=iso(s.now), hard=True, label="ComputedChangesTest SIGKILL restart")
        self.assertEqual(self.computed_log(), log, "the computed log after SIGKILL")
        self.ok(s.call("track", {"userId": "cc-u2", "event": "Login", "messageId": "cc-m4",
                                 "timestamp": iso(s.now - M)}))
        new = self.computed_log(after=log[-1]["seq"])
        self.assertEqual([(c["seq"], c["trait_seq"], c["new_value"]) for c in new],
                         [(log[-1]["seq"] + 1, log[-1]["trait_seq"] + 1, 1)], new)
        # Acknowledged means durable: SIGKILL right after the answer loses nothing.
        log = self.computed_log()
        s.restart(clock=iso(s.now), hard=True, label="ComputedChangesTest SIGKILL restart 2")
        self.assertEqual(self.computed_log(), log, "acknowledged changes survive SIGKILL")
        # Down for a day: cc-u1's logins and cc-u2's new one expired meanwhile.
        s.restart(clock=iso(s.now + D), label="ComputedChangesTest restart a day later")
        ch = self.computed_log(after=log[-1]["seq"])
        self.assertEqual(sorted((c["profile"], c["old_value"], c["new_value"], c["cause"])
                                for c in ch),
                         [("cc-u1", 2, 0, "time"), ("cc-u2", 1, 0, "time")], ch)

    def test_definition_update_delete_and_recreate(self):
        s = self.srv
        self.ok(s.call("track", {"userId": "cd-u1", "event": "Buy", "properties": {"total": 5},
                                 "timestamp": iso(s.now - H)}))
        self.expect(s.post("/v1/computed-traits", {"name": "cd_spend",
                                                   "definition": 'sum(total) of "Buy"'}), 201)
        r = self.ok(s.get("/v1/computed-traits/cd_spend/changes"))
        self.assertEqual(r.json["changes"], [], "creating a trait records no change")
        self.expect(s.put("/v1/computed-traits/cd_spend",
                          {"definition": 'max(total) of "Buy" where total > 10'}), 200)
        ch = self.ok(s.get("/v1/computed-traits/cd_spend/changes")).json["changes"]
        self.assertEqual([(c["profile"], c["old_value"], c["new_value"], c["cause"]) for c in ch],
                         [("cd-u1", 5, None, "definition")], ch)
        self.expect(s.put("/v1/computed-traits/cd_spend", {"definition": 'sum(total) of "Buy"'}),
                    200)
        self.expect(s.delete("/v1/computed-traits/cd_spend"), 204)
        ch = self.ok(s.get("/v1/computed-traits/cd_spend/changes?after=1")).json["changes"]
        self.assertEqual([(c["trait_seq"], c["old_value"], c["new_value"], c["cause"])
                          for c in ch if c["profile"] == "cd-u1"],
                         [(2, None, 5, "definition"), (3, 5, None, "deleted")], ch)
        # The history outlives the trait; the numbering goes on when the name comes back.
        self.expect(s.post("/v1/computed-traits", {"name": "cd_spend",
                                                   "definition": 'sum(total) of "Buy"'}), 201)
        self.ok(s.call("track", {"userId": "cd-u1", "event": "Buy", "properties": {"total": 1},
                                 "timestamp": iso(s.now - M)}))
        ch = self.ok(s.get("/v1/computed-traits/cd_spend/changes?after=3")).json["changes"]
        self.assertEqual([(c["trait_seq"], c["old_value"], c["new_value"]) for c in ch],
                         [(4, 5, 6)], ch)

    def test_sse_resumes_after_last_event_id(self):
        s = self.srv
        self.expect(s.post("/v1/computed-traits", {"name": "cs_n",
                                                   "definition": 'count of "Cs"'}), 201)
        for i in range(3):
            self.ok(s.call("track", {"userId": "cs-u1", "event": "Cs", "messageId": "cs-m%d" % i,
                                     "timestamp": iso(s.now - M)}))
        log = self.computed_log(trait="cs_n")
        self.assertEqual([c["new_value"] for c in log], [1, 2, 3], log)
        # A reconnect with the id of the first change gets exactly the two after it, then the
        # live ones; `after` does the same.
        for headers, path in (({"Accept": "text/event-stream",
                                "Last-Event-ID": str(log[0]["seq"])},
                               "/v1/computed-changes?trait=cs_n"),
                              ({"Accept": "text/event-stream"},
                               "/v1/computed-changes?trait=cs_n&after=%d" % log[0]["seq"])):
            sse = SSE(s, path, headers=headers)
            try:
                evs = sse.take(2, timeout=10)
                self.assertEqual([c for _, _, c in evs], log[1:], path)
            finally:
                sse.close()
        r = self.ok(s.get("/metrics", auth=None))
        self.assertIn("shoal_computed_changes_total", r.text)

    def test_sigkill_under_load_keeps_every_value_chain_whole(self):
        s = self.srv
        self.expect(s.post("/v1/computed-traits", {"name": "ck_n",
                                                   "definition": 'count of "Ck"'}), 201)
        users = ["ck-u%d" % i for i in range(20)]
        stop = threading.Event()
        acked = []

        def load(k):
            i = 0
            while not stop.is_set():
                calls = [{"type": "track", "userId": users[(k * 7 + i + j) % len(users)],
                          "event": "Ck", "messageId": "ck-%d-%d-%d" % (k, i, j),
                          "timestamp": iso(s.now - M)} for j in range(20)]
                i += 1
                try:
                    r = s.batch(calls)
                except OSError:
                    return
                if r.status == 200:
                    acked.extend(c["messageId"] for c in calls)
        threads = [threading.Thread(target=load, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.4)
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait()
        stop.set()
        for t in threads:
            t.join()
        s.start(clock=iso(s.now))
        self.assertGreater(len(acked), 0, "some batches were acknowledged before the kill")
        # Each profile's value changes form one unbroken chain (old = the previous new) with
        # consecutive trait_seq over the trait, and end at the value the engine has now: nothing
        # acknowledged was lost, nothing was recorded twice.
        log = self.computed_log(trait="ck_n")
        self.assertEqual([c["trait_seq"] for c in log], list(range(1, len(log) + 1)))
        seqs = [c["seq"] for c in log]
        self.assertEqual(seqs, sorted(set(seqs)))
        last = {}
        for c in log:
            self.assertEqual(c["old_value"], last.get(c["profile"], 0), c)
            last[c["profile"]] = c["new_value"]
        for u in users:
            r = s.get("/v1/profiles/" + u)
            if r.status == 404:
                self.assertNotIn(u, last)
                continue
            self.assertEqual(r.json["computed"]["ck_n"], last.get(u, 0), u)
        self.assertGreaterEqual(sum(last.values()), len(acked),
                                "every acknowledged call counted")

    def test_erasure_redacts_earlier_value_changes(self):
        s = self.srv
        self.expect(s.post("/v1/computed-traits", {"name": "ce_n",
                                                   "definition": 'count of "Ce"'}), 201)
        self.ok(s.call("track", {"userId": "ce-u1", "event": "Ce", "messageId": "ce-m1",
                                 "timestamp": iso(s.now - M)}))
        self.ok(s.delete("/v1/profiles/ce-u1"))
        ch = self.ok(s.get("/v1/computed-traits/ce_n/changes")).json["changes"]
        self.assertEqual([(c["profile"], c["new_value"], c["cause"]) for c in ch],
                         [("(erased)", 1, "event"), ("ce-u1", None, "erased")], ch)
        self.assertEqual(ch, self.computed_log(trait="ce_n"), "the stream is redacted too")
        # Only the erasure's own changes (one per trait with a value: the counts of the other
        # tests' traits are 0, not null) keep the id.
        mine = self.ok(s.get("/v1/profiles/ce-u1/computed-history")).json["changes"]
        self.assertEqual({c["cause"] for c in mine}, {"erased"}, mine)
        self.assertEqual([c["old_value"] for c in mine if c["trait"] == "ce_n"], [1], mine)

    def test_bad_arguments(self):
        s = self.srv
        self.expect(s.post("/v1/computed-traits", {"name": "cb_n",
                                                   "definition": 'count of "X"'}), 201)
        r = s.get("/v1/computed-traits/cb_nope/changes")
        self.expect_error(r, 404, "not_found", "unknown trait")
        self.assertIn("cb_nope", r.json["error"]["message"])
        for qs, field in (("after=abc", "after"), ("after=-1", "after"), ("limit=0", "limit"),
                          ("limit=x", "limit"), ("after=99999999999999999999999", "after")):
            r = s.get("/v1/computed-traits/cb_n/changes?" + qs)
            self.expect_error(r, 400, "invalid_argument", qs)
            self.assertIn(field, r.json["error"]["message"], r.describe())
        self.expect(s.post("/v1/computed-traits/cb_n/changes", {}), 405)
        self.expect_error(s.get("/v1/computed-changes?after=abc&wait=0"), 400, "invalid_argument")
        self.expect_error(s.get("/v1/computed-changes?limit=0&wait=0"), 400, "invalid_argument")
        r = self.ok(s.get("/v1/computed-traits/cb_n/changes?after=18446744073709551615"))
        self.assertEqual(r.json["changes"], [])
        r = self.ok(s.get("/v1/profiles/cb-nobody/computed-history"))
        self.assertEqual(r.json["changes"], [])
        r = self.ok(s.get("/v1/accounts/cb-noacct/computed-history"))
        self.assertEqual(r.json["changes"], [])
        self.expect(s.get("/v1/computed-changes?wait=0", auth=None), 401)


# --------------------------------------------------------------------------------------------
# Profiles
# --------------------------------------------------------------------------------------------

class ProfilesTest(ServerTest):

    def test_traits_merge_latest_timestamp_wins_and_flattening(self):
        u = "pf-merge"
        identify(self.srv, u, {"plan": "free", "address": {"city": "Paris", "zip": "75001"}},
                 ts=past(5 * H))
        identify(self.srv, u, {"plan": "pro"}, ts=past(3 * H))
        identify(self.srv, u, {"plan": "old", "age": 30}, ts=past(4 * H))  # late arrival
        identify(self.srv, u, {"address": {"zip": None}}, ts=past(2 * H))  # null clears
        t = self.srv.traits(u)
        self.assertEqual(t.get("plan"), "pro", "latest timestamp wins: %s" % t)
        self.assertEqual(t.get("age"), 30)
        self.assertEqual(t.get("address.city"), "Paris", "traits flattened: %s" % t)
        self.assertNotIn("address.zip", t, "null clears the path: %s" % t)
        r = self.ok(self.srv.get("/v1/profiles/" + u))
        self.assertEqual(r.json["id"], u)
        self.assertIsInstance(r.json["segments"], list)

    def test_segments_lookup(self):
        u = "pf-look"
        identify(self.srv, u, {"plan": "look", "age": 40})
        self.srv.create_segment("pf_look_b", 'plan = "look"')
        self.srv.create_segment("pf_look_a", "age > 30")
        self.srv.create_segment("pf_look_c", "age > 50")
        segs = self.srv.profile_segments(u)
        mine = [s for s in segs if s.startswith("pf_look")]
        self.assertEqual(mine, ["pf_look_a", "pf_look_b"])
        self.assertEqual(segs, sorted(segs))
        self.assertEqual([s for s in self.ok(self.srv.get("/v1/profiles/" + u)).json["segments"]
                          if s.startswith("pf_look")], ["pf_look_a", "pf_look_b"])
        r = self.ok(self.srv.get("/v1/profiles/pf-unknown/segments"), "unknown id lookup")
        self.assertEqual(r.json, {"segments": []})
        self.expect_error(self.srv.get("/v1/profiles/pf-unknown"), 404, "not_found")

    def test_profile_known_only_from_events(self):
        self.ok(self.srv.call("track", {"userId": "pf-evonly", "event": "E",
                                        "timestamp": past(H)}))
        r = self.ok(self.srv.get("/v1/profiles/pf-evonly"), "profile with events, no identify")
        self.assertEqual(r.json["traits"], {})

    def test_ids_with_reserved_characters(self):
        u = "a/b c@x.com?&#é"
        identify(self.srv, u, {"plan": "weird"})
        self.srv.create_segment("pf_weird", 'plan = "weird"')
        self.assertEqual(self.srv.traits(u).get("plan"), "weird")
        self.assertEqual(self.srv.members("pf_weird"), [u])
        self.assertEqual(self.srv.profile_segments(u), ["pf_weird"])

    def test_explain_tree_with_next_change(self):
        u = "pf-exp"
        identify(self.srv, u, {"plan": "exp"})
        self.ok(self.srv.call("track", {"userId": u, "event": "Exp Bought",
                                        "timestamp": past(H)}))
        self.srv.create_segment("pf_exp", 'performed "Exp Bought" within 1d and plan = "exp"')
        r = self.ok(self.srv.get("/v1/profiles/%s/explain?segment=pf_exp" % u))
        j = r.json
        self.assertEqual((j["segment"], j["profile"], j["member"]), ("pf_exp", u, True))
        tree = j["tree"]

        def walk(n):
            for k in ("text", "value", "detail", "next_change", "children"):
                self.assertIn(k, n, "node field %s: %s" % (k, r.describe()))
            yield n
            for c in n["children"]:
                yield from walk(c)

        nodes = list(walk(tree))
        self.assertEqual(tree["value"], True)
        self.assertEqual(len(tree["children"]), 2, r.describe())
        texts = {n["text"]: n for n in nodes}
        leaf = texts.get('performed "Exp Bought" within 1d')
        self.assertIsNotNone(leaf, r.describe())
        self.assertTrue(leaf["value"])
        # the event at clock0 - 1h leaves the window at clock0 + 23h + 1ms
        self.assertEqual(parse_iso(leaf["next_change"]), T_CLOCK0 + 23 * H + 1, r.describe())
        self.assertIsNone(texts['plan = "exp"']["next_change"], r.describe())
        r = self.expect(self.srv.get("/v1/profiles/pf-exp-nobody/explain?segment=pf_exp"),
                        (200, 404), "explain for an unknown profile")
        if r.status == 200:
            self.assertEqual(r.json["member"], False)
        self.expect(self.srv.get("/v1/profiles/%s/explain?segment=pf_nope" % u), 404)

    def test_history_enter_then_exit(self):
        u = "pf-hist"
        self.srv.create_segment("pf_hist", 'plan = "hist-in"')
        identify(self.srv, u, {"plan": "hist-in"}, ts=past(3 * H))
        identify(self.srv, u, {"plan": "hist-out"}, ts=past(2 * H))
        r = self.ok(self.srv.get("/v1/profiles/%s/history" % u))
        ch = [c for c in r.json["changes"] if c["segment"] == "pf_hist"]
        self.assertEqual([(c["kind"], c["cause"], c["profile"]) for c in ch],
                         [("enter", "traits", u), ("exit", "traits", u)], r.describe())
        self.assertLess(ch[0]["seq"], ch[1]["seq"])


# --------------------------------------------------------------------------------------------
# Erasure
# --------------------------------------------------------------------------------------------

class ErasureTest(ServerTest):

    def test_erasure_end_to_end(self):
        s = self.srv
        u, other = "er-1", "er-2"
        identify(s, u, {"plan": "er", "email": "x@y.z"})
        identify(s, other, {"plan": "er"})
        self.ok(s.call("track", {"userId": u, "event": "Er Bought", "timestamp": past(H)}))
        s.create_segment("er_plan", 'plan = "er"')
        s.create_segment("er_bought", 'performed "Er Bought"')
        self.expect(s.post("/v1/lists", {"name": "er_list"}), 201)
        self.ok(s.post("/v1/lists/er_list/members", {"add": [u, other]}))
        before = s.last_seq()
        r = self.ok(s.delete("/v1/profiles/" + u), "erase")
        self.assertSub(r, {"erased": True})
        ch = s.all_changes(after=before)
        got = sorted((c["segment"], c["kind"], c["cause"]) for c in ch)
        self.assertEqual(got, [("er_bought", "exit", "erased"), ("er_plan", "exit", "erased")],
                         "changes on erasure: %s" % ch)
        # the id is gone from everything that existed before the erasure
        # the redaction may be asynchronous: allow 2 s
        deadline = time.monotonic() + 2
        while True:
            older = [c for c in s.all_changes() if c["seq"] <= before]
            leaked = [c for c in older if c["profile"] == u]
            if not leaked or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        problems = []  # checked last, so that the rest of the erasure is tested too
        if leaked or not [c for c in older if c["profile"] == "(erased)"]:
            problems.append("erased id still in the stored change log 2 s after the erasure "
                            "(should read \"(erased)\"): GET /v1/changes?after=0 -> %s"
                            % json.dumps(leaked)[:600])
        self.check_erased(u, other)
        # durable before the answer: SIGKILL, restart
        s.restart(hard=True, label="ErasureTest SIGKILL restart")
        self.check_erased(u, other)
        s.restart(label="ErasureTest SIGTERM restart")
        self.check_erased(u, other)
        self.assert_verify_ok()
        # a later call with the same id starts a new profile
        identify(s, u, {"fresh": True})
        t = s.traits(u)
        self.assertEqual(t, {"fresh": True}, "a new profile has only the new traits")
        self.assertEqual(s.profile_segments(u), [], "no old events or list membership")
        self.expect_error(s.delete("/v1/profiles/er-never"), 404, "not_found")
        if problems:
            self.fail("; ".join(problems))

    def check_erased(self, u, other):
        s = self.srv
        self.expect_error(s.get("/v1/profiles/" + u), 404, "not_found", "erased profile")
        self.assertEqual(s.profile_segments(u), [])
        self.assertEqual(s.members("er_plan"), [other])
        self.assertEqual(s.members("er_bought"), [])
        r = self.ok(s.get("/v1/lists/er_list/members"))
        self.assertEqual(r.json["members"], [other], "erased id must leave static lists")
        h = self.ok(s.get("/v1/profiles/%s/history" % u))
        # Only the erasure's own exits keep the id (they tell stream readers whom to remove).
        self.assertEqual(sorted((c["segment"], c["kind"], c["cause"]) for c in h.json["changes"]),
                         [("er_bought", "exit", "erased"), ("er_plan", "exit", "erased")],
                         "history of an erased id: " + h.describe())


# --------------------------------------------------------------------------------------------
# Identity merges (docs/language.md, "Identity")
# --------------------------------------------------------------------------------------------

class IdentityTest(ServerTest):

    def test_login_merges_anonymous_profile_and_survives_restart(self):
        s = self.srv
        a, u, old = "id-anon-1", "id-user-1", "id-crm-1"
        s.create_segment("id_cart2", 'performed "Id Added" at least 2 times')
        s.create_segment("id_funnel", 'performed "Id Added" then "Id Bought" within 1d')
        for i in (4, 3):
            self.ok(s.call("track", {"anonymousId": a, "event": "Id Added",
                                     "messageId": mid(), "timestamp": past(i * H)}))
        self.ok(s.call("identify", {"userId": u, "traits": {"plan": "id"},
                                    "messageId": mid(), "timestamp": past(3 * H)}))
        self.assertEqual(s.members("id_cart2"), [a])
        before = s.last_seq()
        # Login: the identify carries both ids.
        self.ok(s.call("identify", {"userId": u, "anonymousId": a, "traits": {"email": "i@d.x"},
                                    "messageId": mid(), "timestamp": past(2 * H)}))
        ch = [(c["profile"], c["kind"], c["cause"], c.get("cause_ref"))
              for c in s.all_changes(segment="id_cart2", after=before)]
        self.assertEqual(ch, [(a, "exit", "merged", u), (u, "enter", "merged", a)])
        # The merged-away id answers for the survivor; later anonymous calls go to it.
        self.ok(s.call("track", {"anonymousId": a, "event": "Id Bought",
                                 "messageId": mid(), "timestamp": past(H)}))
        self.ok(s.call("alias", {"previousId": old, "userId": u,
                                 "messageId": mid(), "timestamp": past(H)}))
        self.check_merged(a, u, old)
        seq = s.last_seq()
        s.restart(hard=True, label="IdentityTest SIGKILL restart")
        self.check_merged(a, u, old)
        s.restart(label="IdentityTest SIGTERM restart")
        self.check_merged(a, u, old)
        self.assertEqual(s.all_changes(after=seq), [], "a restart must not change membership")
        self.assert_verify_ok()
        # Erasing either id erases the merged profile, every id of it.
        self.ok(s.delete("/v1/profiles/" + q(a)), "erase")
        for k in (a, u, old):
            self.expect_error(s.get("/v1/profiles/" + q(k)), 404, "not_found", k)
        s.restart(label="IdentityTest restart after erasure")
        for k in (a, u, old):
            self.expect_error(s.get("/v1/profiles/" + q(k)), 404, "not_found", k)
        self.assertEqual(s.members("id_cart2"), [])
        self.assert_verify_ok()

    def test_list_follows_the_merged_profile_across_restart(self):
        s = self.srv
        a, u = "id-anon-2", "id-user-2"
        self.expect(s.post("/v1/lists", {"name": "id_list"}), 201)
        s.create_segment("id_listed", 'in list "id_list"')
        self.ok(s.post("/v1/lists/id_list/members", {"add": [a]}))
        self.ok(s.call("track", {"anonymousId": a, "event": "Id Seen",
                                 "messageId": mid(), "timestamp": past(2 * H)}))
        self.ok(s.call("identify", {"userId": u, "anonymousId": a, "traits": {"plan": "id"},
                                    "messageId": mid(), "timestamp": past(H)}))
        members = lambda: self.ok(s.get("/v1/lists/id_list/members")).json["members"]
        self.assertEqual(members(), [u], "the survivor holds the list membership")
        self.assertEqual(s.members("id_listed"), [u])
        # Removing the survivor removes the key the profile was added under, also on disk.
        self.ok(s.post("/v1/lists/id_list/members", {"remove": [u]}))
        self.assertEqual(members(), [])
        s.restart(label="IdentityTest lists restart")
        self.assertEqual(members(), [], "a restart must not bring the removed profile back")
        self.assertEqual(s.members("id_listed"), [])
        self.assert_verify_ok()

    def check_merged(self, a, u, old):
        s = self.srv
        self.assertEqual(s.members("id_cart2"), [u])
        self.assertEqual(s.members("id_funnel"), [u])
        for k in (a, u, old):
            self.assertEqual(s.profile_segments(k), ["id_cart2", "id_funnel"], k)
            self.assertEqual(s.traits(k), {"plan": "id", "email": "i@d.x"}, k)


# --------------------------------------------------------------------------------------------
# Accounts (group calls, account segments, users by their account)
# --------------------------------------------------------------------------------------------

class AccountsTest(ServerTest):

    def test_account_segments_through_http(self):
        s = self.srv
        now = s.now
        # Three users of acme, one of globex; each clicks at a different time.
        for u, acct in (("ac-1", "acme"), ("ac-2", "acme"), ("ac-3", "acme"), ("ac-4", "globex")):
            self.ok(s.call("group", {"userId": u, "groupId": acct,
                                     "traits": {"industry": "fintech" if acct == "acme" else "retail"},
                                     "timestamp": iso(now - 20 * 24 * H)}))
        for i, u in enumerate(("ac-1", "ac-2", "ac-3", "ac-4")):
            self.ok(s.call("track", {"userId": u, "event": "Email Clicked",
                                     "timestamp": iso(now - (10 - i) * 24 * H)}))
        r = self.expect(s.post("/v1/segments", {
            "name": "ac_engaged", "target": "accounts",
            "definition": 'at least 3 members (performed "Email Clicked" within 14d)'}), 201)
        self.assertEqual(r.json["target"], "accounts", r.describe())
        self.assertEqual(r.json["size"], 1, r.describe())
        s.create_segment("ac_users", 'account in segment "ac_engaged"')
        self.assertEqual(s.members("ac_engaged"), ["acme"])
        self.assertEqual(s.members("ac_users"), ["ac-1", "ac-2", "ac-3"])
        # The account and user APIs.
        a = self.ok(s.get("/v1/accounts/acme"))
        self.assertEqual(a.json["traits"], {"industry": "fintech"}, a.describe())
        self.assertEqual(a.json["segments"], ["ac_engaged"], a.describe())
        self.assertEqual(a.json["users"], ["ac-1", "ac-2", "ac-3"], a.describe())
        self.assertEqual(self.ok(s.get("/v1/accounts/acme/segments")).json["segments"],
                         ["ac_engaged"])
        self.assertIn("acme", self.ok(s.get("/v1/profiles/ac-1")).json["accounts"])
        self.expect_error(s.get("/v1/accounts/nobody"), 404, "not_found")
        ex = self.ok(s.get("/v1/accounts/acme/explain?segment=ac_engaged"))
        self.assertTrue(ex.json["member"], ex.describe())
        # The target never changes.
        self.expect(s.put("/v1/segments/ac_engaged", {"definition": "any member (plan = \"x\")",
                                                      "target": "users"}), 409)
        # ac-1's click (now - 10d) turns 14 days old at now + 4d + 1ms: acme has 2 clickers left
        # and leaves, and its users leave the user segment, at that instant.
        last = s.last_seq()
        self.ok(s.advance("4d"))
        self.assertEqual(s.members("ac_engaged"), ["acme"])
        self.ok(s.advance("1ms"))
        self.assertEqual(s.members("ac_engaged"), [])
        self.assertEqual(s.members("ac_users"), [])
        ch = s.all_changes(after=last)
        got = sorted((c["segment"], c["target"], c["profile"], c["kind"]) for c in ch)
        self.assertEqual(got, [("ac_engaged", "accounts", "acme", "exit"),
                               ("ac_users", "users", "ac-1", "exit"),
                               ("ac_users", "users", "ac-2", "exit"),
                               ("ac_users", "users", "ac-3", "exit")], ch)
        # Targets survive a restart: the account segment is still an account segment.
        # (--clock at the instant reached, so that time does not go back across the restart.)
        s.restart(clock=iso(s.now), hard=True, label="AccountsTest SIGKILL restart")
        seg = self.ok(s.get("/v1/segments/ac_engaged"))
        self.assertEqual(seg.json["target"], "accounts", seg.describe())
        # A new clicker brings acme back, with cause event.
        last = s.last_seq()
        self.ok(s.call("track", {"userId": "ac-2", "event": "Email Clicked",
                                 "timestamp": iso(s.now - H)}))
        self.ok(s.call("track", {"userId": "ac-1", "event": "Email Clicked",
                                 "timestamp": iso(s.now - H)}))
        self.assertEqual(s.members("ac_engaged"), ["acme"])
        self.assertEqual(s.members("ac_users"), ["ac-1", "ac-2", "ac-3"])
        # The account's membership history, across the SIGKILL: entered at creation, left when
        # the click aged out, entered again; a user's history has only user segments.
        h = self.ok(s.get("/v1/accounts/acme/history"))
        self.assertEqual([(c["segment"], c["kind"], c["cause"]) for c in h.json["changes"]],
                         [("ac_engaged", "enter", "definition"), ("ac_engaged", "exit", "time"),
                          ("ac_engaged", "enter", "event")], h.describe())
        self.assertTrue(all(c["target"] == "users"
                            for c in self.ok(s.get("/v1/profiles/ac-1/history")).json["changes"]))
        self.assertEqual(self.ok(s.get("/v1/accounts/nobody/history")).json["changes"], [])
        self.assert_verify_ok()

    def test_account_own_events_through_http(self):
        # context.groupId on a track (single call and batch) makes it an event of that account
        # too; the account segment reads it, survives a SIGKILL (the call log replays it), and an
        # erased sender's events stop counting.
        s = self.srv
        now = s.now
        for u in ("ae-1", "ae-2"):
            self.ok(s.call("group", {"userId": u, "groupId": "initech",
                                     "timestamp": iso(now - 20 * 24 * H)}))
        r = self.expect(s.post("/v1/segments", {
            "name": "ae_active", "target": "accounts",
            "definition": 'performed "Logged In" at least 3 times within 7d'}), 201)
        self.assertEqual(r.json["size"], 0, r.describe())
        self.ok(s.call("track", {"userId": "ae-1", "event": "Logged In",
                                 "context": {"groupId": "initech"}, "timestamp": iso(now - 3 * H)}))
        self.ok(s.call("track", {"userId": "ae-1", "event": "Logged In",  # ae-1's event only
                                 "timestamp": iso(now - 3 * H)}))
        self.ok(s.batch([{"type": "track", "userId": "ae-2", "event": "Logged In",
                          "messageId": mid(), "context": {"groupId": "initech"},
                          "timestamp": iso(now - 2 * H)}]))
        self.assertEqual(s.members("ae_active"), [])
        # The sender need not be a member: ae-3 is no user of initech.
        self.ok(s.call("track", {"userId": "ae-3", "event": "Logged In",
                                 "context": {"groupId": "initech"}, "timestamp": iso(now - H)}))
        self.assertEqual(s.members("ae_active"), ["initech"])
        self.assertEqual(self.ok(s.get("/v1/accounts/initech")).json["users"], ["ae-1", "ae-2"])
        s.restart(hard=True, label="AccountsTest own events SIGKILL restart")
        self.assertEqual(s.members("ae_active"), ["initech"])
        last = s.last_seq()
        self.ok(s.delete("/v1/profiles/ae-3"), "erase")
        self.assertEqual(s.members("ae_active"), [])
        ch = [c for c in s.all_changes(after=last) if c["segment"] == "ae_active"]
        self.assertEqual([(c["profile"], c["kind"], c["cause"]) for c in ch],
                         [("initech", "exit", "erased")], ch)
        self.assert_verify_ok()


# --------------------------------------------------------------------------------------------
# Static lists
# --------------------------------------------------------------------------------------------

class ListsTest(ServerTest):

    def test_create_add_remove(self):
        s = self.srv
        r = self.expect(s.post("/v1/lists", {"name": "ls_basic"}), 201)
        self.assertSub(r, {"name": "ls_basic", "size": 0})
        self.expect_error(s.post("/v1/lists", {"name": "ls_basic"}), 409, "already_exists")
        r = self.ok(s.post("/v1/lists/ls_basic/members", {"add": ["l3", "l1", "l2", "l1"]}))
        self.assertSub(r, {"name": "ls_basic", "size": 3})
        r = self.ok(s.post("/v1/lists/ls_basic/members", {"remove": ["l2", "l9"]}))
        self.assertSub(r, {"name": "ls_basic", "size": 2})
        self.assertEqual(self.ok(s.get("/v1/lists/ls_basic/members")).json["members"],
                         ["l1", "l3"])
        lists = self.ok(s.get("/v1/lists")).json["lists"]
        self.assertIn(("ls_basic", 2), [(l.get("name"), l.get("size")) for l in lists], lists)
        self.expect_error(s.get("/v1/lists/ls_nope/members"), 404, "not_found")
        self.expect_error(s.post("/v1/lists/ls_nope/members", {"add": ["x"]}), 404, "not_found")

    def test_csv_upload_with_header(self):
        s = self.srv
        self.expect(s.post("/v1/lists", {"name": "ls_csv"}), 201)
        body = b"user_id,name\r\nc1,Ann\r\nc2,Bob\r\nc3,\"Smith, J\"\r\n"
        r = self.ok(s.post("/v1/lists/ls_csv/upload", body, auth="admin",
                           headers={"Content-Type": "text/csv"}), "CSV with header")
        self.assertSub(r, {"name": "ls_csv", "size": 3, "added": 3})
        self.assertEqual(self.ok(s.get("/v1/lists/ls_csv/members")).json["members"],
                         ["c1", "c2", "c3"])
        r = self.ok(s.post("/v1/lists/ls_csv/upload", b"c3\nc4\n", auth="admin",
                           headers={"Content-Type": "text/csv"}), "CSV without header")
        self.assertEqual(r.json["size"], 4, r.describe())
        for hdr in ("id", "userId"):
            name = "ls_csv_" + hdr.lower()
            self.expect(s.post("/v1/lists", {"name": name}), 201)
            r = self.ok(s.post("/v1/lists/%s/upload" % name, ("%s\nh1\n" % hdr).encode(),
                               auth="admin", headers={"Content-Type": "text/csv"}))
            self.assertEqual(self.ok(s.get("/v1/lists/%s/members" % name)).json["members"],
                             ["h1"], "header %r taken as an id" % hdr)

    def test_csv_excel_export_bom_and_blank_lines(self):
        s = self.srv
        self.expect(s.post("/v1/lists", {"name": "ls_bom"}), 201)
        body = "\ufeffuser_id,email\r\nb1,a@x\r\n\r\nb2,b@x\r\n".encode("utf-8")
        r = self.ok(s.post("/v1/lists/ls_bom/upload", body, auth="admin",
                           headers={"Content-Type": "text/csv"}), "CSV with a UTF-8 BOM")
        members = self.ok(s.get("/v1/lists/ls_bom/members")).json["members"]
        self.assertEqual(members, ["b1", "b2"],
                         "a BOM-prefixed header and blank lines are not ids: " + r.describe())

    def test_from_segment_snapshot(self):
        s = self.srv
        identify(s, "ls-s1", {"plan": "snap"})
        identify(s, "ls-s2", {"plan": "snap"})
        s.create_segment("ls_snap_seg", 'plan = "snap"')
        r = self.expect(s.post("/v1/lists", {"name": "ls_snap", "from_segment": "ls_snap_seg"}),
                        201)
        self.assertSub(r, {"name": "ls_snap", "size": 2})
        identify(s, "ls-s3", {"plan": "snap"})
        self.assertEqual(self.ok(s.get("/v1/lists/ls_snap/members")).json["members"],
                         ["ls-s1", "ls-s2"], "a snapshot must not follow the segment")
        self.expect(s.post("/v1/lists", {"name": "ls_snap2", "from_segment": "ls_nope"}),
                    (400, 404), "from an unknown segment")

    def test_in_list_segment_reacts(self):
        s = self.srv
        identify(s, "ls-k1", {"plan": "k"})
        identify(s, "ls-k2", {"plan": "k"})
        self.expect(s.post("/v1/lists", {"name": "ls_vip"}), 201)
        s.create_segment("ls_vip_seg", 'in list "ls_vip" and plan = "k"')
        self.assertEqual(s.count("ls_vip_seg"), 0)
        last = s.last_seq()
        self.ok(s.post("/v1/lists/ls_vip/members", {"add": ["ls-k1", "ls-k9"]}))
        self.assertEqual(s.members("ls_vip_seg"), ["ls-k1"])
        self.ok(s.post("/v1/lists/ls_vip/members", {"remove": ["ls-k1"]}))
        self.assertEqual(s.members("ls_vip_seg"), [])
        ch = s.all_changes("ls_vip_seg", after=last)
        self.assertEqual([(c["profile"], c["kind"], c["cause"], c.get("cause_ref")) for c in ch],
                         [("ls-k1", "enter", "list", "ls_vip"),
                          ("ls-k1", "exit", "list", "ls_vip")])
        # ls-k9 was added before any message: it enters with its first message
        identify(s, "ls-k9", {"plan": "k"})
        self.assertEqual(s.members("ls_vip_seg"), ["ls-k9"])
        r = self.ok(s.post("/v1/lists/ls_vip/upload", b"id\nls-k2\n", auth="admin",
                           headers={"Content-Type": "text/csv"}))
        self.assertEqual(s.members("ls_vip_seg"), ["ls-k2", "ls-k9"], "CSV upload re-evaluates")

    def test_delete_list_409_while_referenced(self):
        s = self.srv
        self.expect(s.post("/v1/lists", {"name": "ls_ref"}), 201)
        s.create_segment("ls_ref_seg", 'in list "ls_ref"')
        self.expect_error(s.delete("/v1/lists/ls_ref"), 409, "failed_precondition")
        self.expect(s.delete("/v1/segments/ls_ref_seg"), 204)
        self.expect(s.delete("/v1/lists/ls_ref"), 204)
        self.expect(s.get("/v1/lists/ls_ref/members"), 404)
        self.expect(s.delete("/v1/lists/ls_ref"), 404)


# --------------------------------------------------------------------------------------------
# The change stream
# --------------------------------------------------------------------------------------------

class ChangeStreamTest(ServerTest):

    def test_sse_receives_enter_and_exit_filtered(self):
        s = self.srv
        s.create_segment("cs_a", 'plan = "cs-a"')
        s.create_segment("cs_b", 'plan = "cs-b"')
        sse = SSE(s, "/v1/changes?segment=cs_a")
        try:
            self.assertEqual(sse.status, 200)
            self.assertTrue(sse.headers.get("content-type", "").startswith("text/event-stream"),
                            sse.headers)
            identify(s, "cs-x1", {"plan": "cs-a"}, ts=past(3 * H))
            identify(s, "cs-x1", {"plan": "cs-b"}, ts=past(2 * H))
            identify(s, "cs-x2", {"plan": "cs-a"}, ts=past(H))
            evs = sse.take(3, timeout=10)
            self.assertEqual(len(evs), 3, "SSE events received: %s" % evs)
            for eid, ename, ch in evs:
                self.assertEqual(ename, "change")
                self.assertEqual(eid, str(ch["seq"]), "id: SEQ")
                self.assertEqual(ch["segment"], "cs_a", "segment filter")
            self.assertEqual([(c["profile"], c["kind"], c["cause"]) for _, _, c in evs],
                             [("cs-x1", "enter", "traits"), ("cs-x1", "exit", "traits"),
                              ("cs-x2", "enter", "traits")])
            seqs = [c["seq"] for _, _, c in evs]
            self.assertEqual(seqs, sorted(seqs))
            self.assertEqual(len(set(seqs)), 3)
            c0 = evs[0][2]
            for k in ("seq", "segment", "segment_seq", "profile", "kind", "cause", "cause_ref",
                      "event_time", "processed_at"):
                self.assertIn(k, c0, "Change field %s" % k)
            self.assertEqual(sse.take(1, timeout=0.5), [], "a cs_b change leaked through")
        finally:
            sse.close()

    def test_sse_resume_with_last_event_id(self):
        s = self.srv
        s.create_segment("cs_r", 'plan = "cs-r"')
        for i in range(6):
            identify(s, "cs-r%d" % i, {"plan": "cs-r"})
        log = s.all_changes("cs_r")
        self.assertEqual(len(log), 6)
        resume = log[1]["seq"]
        # Last-Event-ID takes precedence over ?after=0
        sse = SSE(s, "/v1/changes?segment=cs_r&after=0",
                  headers={"Accept": "text/event-stream", "Last-Event-ID": str(resume)})
        try:
            evs = sse.take(4, timeout=10)
            self.assertEqual([c["seq"] for _, _, c in evs], [c["seq"] for c in log[2:]],
                             "resume must give exactly the changes after Last-Event-ID")
            self.assertEqual(sse.take(1, timeout=0.5), [], "duplicate or extra change after resume")
            identify(s, "cs-r9", {"plan": "cs-r"})
            evs = sse.take(1, timeout=10)
            self.assertEqual([(c["profile"], c["segment_seq"]) for _, _, c in evs],
                             [("cs-r9", 7)], "live change after the replay")
        finally:
            sse.close()
        # ?stream=sse with after=0 and no Accept header replays from the beginning
        sse = SSE(s, "/v1/changes?stream=sse&segment=cs_r&after=0", headers={})
        try:
            evs = sse.take(7, timeout=10)
            self.assertEqual([c["segment_seq"] for _, _, c in evs], list(range(1, 8)))
        finally:
            sse.close()

    def test_sse_many_changes_no_gap(self):
        s = self.srv
        s.create_segment("cs_bulk", 'plan = "cs-bulk"')
        sse = SSE(s, "/v1/changes?segment=cs_bulk")
        try:
            calls = []
            for i in range(300):
                calls.append({"type": "identify", "userId": "cs-bulk-%03d" % i,
                              "traits": {"plan": "cs-bulk"}, "messageId": mid(),
                              "timestamp": past(H)})
            for i in range(0, 300, 2):
                calls.append({"type": "identify", "userId": "cs-bulk-%03d" % i,
                              "traits": {"plan": "none"}, "messageId": mid(),
                              "timestamp": past(H - 1000)})
            self.ok(s.batch(calls))
            evs = sse.take(450, timeout=20)
            self.assertEqual(len(evs), 450)
            self.assertEqual([c["segment_seq"] for _, _, c in evs], list(range(1, 451)))
        finally:
            sse.close()

    def test_change_record_for_an_event(self):
        s = self.srv
        s.create_segment("cs_ev", 'performed "Cs Bought" where total > 10')
        m = mid()
        self.ok(s.call("track", {"userId": "cs-ev1", "event": "Cs Bought", "messageId": m,
                                 "properties": {"total": 12}, "timestamp": past(2 * H)}))
        ch = s.all_changes("cs_ev")
        self.assertEqual(len(ch), 1, ch)
        c = ch[0]
        self.assertEqual((c["profile"], c["kind"], c["cause"], c.get("cause_ref"), c.get("event"),
                          c["segment_seq"]),
                         ("cs-ev1", "enter", "event", m, "Cs Bought", 1), c)
        self.assertEqual(parse_iso(c["event_time"]), T_CLOCK0 - 2 * H, c)
        self.assertEqual(parse_iso(c["processed_at"]), T_CLOCK0,
                         "processed_at on the clock: %s" % c)

    def test_referencing_segment_follows_with_cause_segment(self):
        s = self.srv
        identify(s, "cs-ref1", {"plan": "cs-ref", "age": 20})
        identify(s, "cs-ref2", {"plan": "cs-other", "age": 20})
        s.create_segment("cs_ref_base", 'plan = "cs-ref"')
        s.create_segment("cs_ref_dep", 'in segment "cs_ref_base" and age > 18')
        last = s.last_seq()
        self.ok(s.put("/v1/segments/cs_ref_base", {"definition": 'plan = "cs-other"'}))
        dep = s.all_changes("cs_ref_dep", after=last)
        self.assertEqual(sorted((c["profile"], c["kind"], c["cause"], c.get("cause_ref"))
                                for c in dep),
                         [("cs-ref1", "exit", "segment", "cs_ref_base"),
                          ("cs-ref2", "enter", "segment", "cs_ref_base")], dep)
        self.assertEqual(s.members("cs_ref_dep"), ["cs-ref2"])

    def test_long_poll_changes_next_and_limit(self):
        s = self.srv
        s.create_segment("cs_lp", 'plan = "cs-lp"')
        s.create_segment("cs_lp2", 'plan = "cs-lp2"')
        s.create_segment("cs_lp3", 'plan = "cs-lp3"')
        for i in range(5):
            identify(s, "cs-lp%d" % i, {"plan": "cs-lp"})
        identify(s, "cs-lp-other", {"plan": "cs-lp2"})
        identify(s, "cs-lp-third", {"plan": "cs-lp3"})
        full = s.all_changes("cs_lp")
        self.assertEqual([c["segment_seq"] for c in full], [1, 2, 3, 4, 5])
        after, walked = 0, []
        for _ in range(10):
            r = self.ok(s.changes("cs_lp", after=after, limit=2, wait=0))
            self.assertLessEqual(len(r.json["changes"]), 2)
            if not r.json["changes"]:
                self.assertEqual(r.json["next"], after, "next of an empty answer")
                break
            walked += r.json["changes"]
            # next may skip past changes of other segments the server scanned
            self.assertGreaterEqual(r.json["next"], r.json["changes"][-1]["seq"])
            after = r.json["next"]
        self.assertEqual(walked, full, "paging with next = the whole log")
        both = s.all_changes(["cs_lp", "cs_lp2"])
        self.assertEqual(sorted(set(c["segment"] for c in both)), ["cs_lp", "cs_lp2"],
                         "repeated segment= filters")
        self.assertEqual(len(both), 6)

    def test_long_poll_waits_and_wakes(self):
        s = self.srv
        s.create_segment("cs_wait", 'plan = "cs-wait"')
        after = s.last_seq()
        t0 = time.monotonic()
        r = self.ok(s.changes("cs_wait", after=after, wait=1))
        el = time.monotonic() - t0
        self.assertEqual(r.json["changes"], [])
        self.assertTrue(0.8 <= el < 5, "wait=1 answered after %.2fs" % el)
        box = {}

        def poll():
            srv2 = s  # separate thread: separate connection
            box["t0"] = time.monotonic()
            box["r"] = srv2.changes("cs_wait", after=after, wait=20)
            box["t1"] = time.monotonic()

        th = threading.Thread(target=poll)
        th.start()
        time.sleep(0.3)  # let the poll start waiting (not a window: wakeup latency)
        identify(s, "cs-w1", {"plan": "cs-wait"})
        th.join(25)
        r = box.get("r")
        self.assertIsNotNone(r, "long-poll never returned")
        self.ok(r)
        self.assertEqual([c["profile"] for c in r.json["changes"]], ["cs-w1"])
        self.assertLess(box["t1"] - box["t0"], 5, "long-poll did not wake on the change")

    def test_stream_clients_metric(self):
        s = self.srv
        streams = [SSE(s, "/v1/changes") for _ in range(3)]
        try:
            deadline = time.monotonic() + 3
            val = None
            while time.monotonic() < deadline:
                for line in s.get("/metrics", auth=None).text.splitlines():
                    if line.startswith("shoal_stream_clients "):
                        val = float(line.split()[-1])
                if val is not None and val >= 3:
                    break
                time.sleep(0.1)
            self.assertGreaterEqual(val, 3, "shoal_stream_clients with 3 SSE clients open")
        finally:
            for st in streams:
                st.close()

    def test_no_gap_under_concurrent_ingest(self):
        # SSE and a long-poll walker read while 3 threads flip memberships; once quiet, what
        # each saw must be exactly the log (no gap, no reordering, no duplicate).
        s = self.srv
        s.create_segment("cs_conc", 'plan = "cs-on"')
        s.create_segment("cs_conc2", 'plan = "cs-off"')
        start = s.last_seq()
        sse = SSE(s, "/v1/changes?segment=cs_conc&segment=cs_conc2&after=%d" % start)
        stop = threading.Event()
        walked = []

        def walker():
            after = start
            while True:
                r = s.changes(["cs_conc", "cs_conc2"], after=after, limit=7, wait=1)
                if r.status != 200:
                    walked.append(("error", r.describe()))
                    return
                walked.extend(r.json["changes"])
                after = r.json["next"]
                if stop.is_set() and not r.json["changes"]:
                    return

        def writer(t):
            rnd = random.Random(t)
            for b in range(15):
                calls = [{"type": "identify", "userId": "cs-conc-%d" % rnd.randrange(40),
                          "traits": {"plan": rnd.choice(["cs-on", "cs-off"])},
                          "messageId": mid(), "timestamp": iso(T_CLOCK0 - H + b * 100 + i)}
                         for i in range(20)]
                self.ok(s.batch(calls))

        wk = threading.Thread(target=walker)
        wk.start()
        ws = [threading.Thread(target=writer, args=(t,)) for t in range(3)]
        for w in ws:
            w.start()
        for w in ws:
            w.join(60)
        stop.set()
        wk.join(60)
        try:
            log = s.all_changes(["cs_conc", "cs_conc2"], after=start)
            self.assertGreater(len(log), 50)
            got = [c for _, _, c in sse.take(len(log), timeout=20)]
            self.assertEqual([c["seq"] for c in got], [c["seq"] for c in log], "SSE vs log")
            self.assertEqual(got, log)
            self.assertEqual([c["seq"] for c in walked], [c["seq"] for c in log],
                             "long-poll walk during ingest vs log")
            for seg in ("cs_conc", "cs_conc2"):
                ss = [c["segment_seq"] for c in log if c["segment"] == seg]
                self.assertEqual(ss, list(range(ss[0], ss[0] + len(ss))), seg)
        finally:
            sse.close()

    def test_long_poll_bad_arguments(self):
        s = self.srv
        self.expect_error(s.get("/v1/changes?after=abc&wait=0"), 400, "invalid_argument")
        self.expect_error(s.get("/v1/changes?after=0&wait=0&limit=-3"), 400, "invalid_argument")


class RestartStreamTest(ServerTest):

    def test_stream_continues_across_restarts(self):
        s = self.srv
        s.create_segment("rs_seg", 'plan = "rs"')
        self.expect(s.post("/v1/lists", {"name": "rs_list"}), 201)
        self.ok(s.post("/v1/lists/rs_list/members", {"add": ["rs-1"]}))
        identify(s, "rs-1", {"plan": "rs"})
        identify(s, "rs-2", {"plan": "rs"})
        log1 = s.all_changes()
        last = log1[-1]["seq"]
        code = s.stop()
        self.assertEqual(code, 0, "SIGTERM exit code; log:\n" + s.log_tail())
        secs = s.start()
        RESTART_TIMES.append(("RestartStreamTest SIGTERM restart", secs))
        self.assertEqual(s.all_changes(), log1, "the change log after a clean restart")
        self.assertEqual(s.members("rs_seg"), ["rs-1", "rs-2"])
        self.assertEqual(self.ok(s.get("/v1/lists/rs_list/members")).json["members"], ["rs-1"])
        self.assertEqual(s.traits("rs-1").get("plan"), "rs")
        sse = SSE(s, "/v1/changes?segment=rs_seg",
                  headers={"Accept": "text/event-stream", "Last-Event-ID": str(last)})
        try:
            identify(s, "rs-3", {"plan": "rs"})
            evs = sse.take(1, timeout=10)
            self.assertEqual(len(evs), 1)
            c = evs[0][2]
            self.assertGreater(c["seq"], last, "seq must continue after restart")
            self.assertEqual(c["segment_seq"], 3, "segment_seq continues after restart")
        finally:
            sse.close()
        log2 = s.all_changes()
        s.restart(hard=True, label="RestartStreamTest SIGKILL restart")
        self.assertEqual(s.all_changes(), log2, "the change log after SIGKILL")
        identify(s, "rs-4", {"plan": "rs"})
        ch = s.all_changes("rs_seg")
        self.assertEqual([c["segment_seq"] for c in ch], [1, 2, 3, 4])
        # deleted and re-created under the same name after a restart: segment_seq goes on
        self.expect(s.delete("/v1/segments/rs_seg"), 204)
        s.restart(label="RestartStreamTest SIGTERM restart 2")
        s.create_segment("rs_seg", 'plan = "rs"')
        ch = s.all_changes("rs_seg")
        self.assertEqual([c["segment_seq"] for c in ch], list(range(1, 13)),
                         "4 enters, 4 deleted exits, 4 enters: %s" % ch)
        seqs = [c["seq"] for c in s.all_changes()]
        self.assertEqual(seqs, sorted(set(seqs)), "global seq strictly increasing")
        self.assert_verify_ok()


class RobustnessTest(ServerTest):
    CLOCK = None

    def test_garbage_and_huge_headers_do_not_hurt(self):
        s = self.srv
        for payload in [b"\x00\xff garbage\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                        b"POST /v1/batch HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                        b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n"]:
            sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            try:
                sock.sendall(payload)
                sock.recv(4096)
            except OSError:
                pass
            sock.close()
        self.ok(s.get("/healthz", auth=None), "healthy after malformed requests")

    def test_many_idle_connections(self):
        s = self.srv
        socks = []
        try:
            for _ in range(300):
                socks.append(socket.create_connection(("127.0.0.1", s.port), timeout=5))
            t0 = time.monotonic()
            self.ok(s.get("/healthz", auth=None), "with 300 idle connections open")
            self.assertLess(time.monotonic() - t0, 2)
        finally:
            for so in socks:
                so.close()

    def test_second_server_on_the_same_data_dir_refuses(self):
        s = self.srv
        port = free_port()
        p = subprocess.Popen([s.bin, "serve", "--port", str(port), "--data-dir", s.data_dir,
                              "--write-key", WRITE_KEY, "--admin-token", ADMIN_TOKEN],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            code = p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            self.fail("a second shoal serve on the same data dir kept running")
        self.assertNotEqual(code, 0, "second server exit code")
        self.ok(s.get("/healthz", auth=None), "the first server is unharmed")

    def test_zz_sigterm_with_open_streams_exits_promptly(self):
        s = self.srv
        sse = SSE(s, "/v1/changes")
        box = {}

        def poll():
            try:
                box["r"] = s.changes(None, after=10 ** 6, wait=60, timeout=70)
            except Exception as e:  # the connection closes at shutdown
                box["e"] = e

        th = threading.Thread(target=poll)
        th.start()
        time.sleep(0.3)  # let both requests reach the server
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        try:
            code = s.proc.wait(10)
        except subprocess.TimeoutExpired:
            code = "still running after 10 s"
        took = time.monotonic() - t0
        sse.close()
        th.join(70)
        self.assertEqual(code, 0, "SIGTERM with an SSE and a long-poll client open")
        self.assertLess(took, 5, "shutdown took %.1fs" % took)


class OverloadTest(ServerTest):
    CLOCK = None
    EXTRA_ARGS = ("--max-pending", "60")  # shoal serve --help: 503 beyond this many pending

    def test_503_retry_after_and_nothing_stored(self):
        s = self.srv
        results = []
        lock = threading.Lock()

        def worker(tid):
            for n in range(40):
                ids = ["ov-%d-%d-%d" % (tid, n, i) for i in range(50)]
                r = s.batch([{"type": "track", "userId": "ov-u%d" % (i % 9), "event": "Ov",
                              "messageId": m} for i, m in enumerate(ids)])
                with lock:
                    results.append((r, ids))

        ths = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
        for t in ths:
            t.start()
        for t in ths:
            t.join(60)
        statuses = sorted(set(r.status for r, _ in results))
        self.assertTrue(set(statuses) <= {200, 503}, statuses)
        rejected = [(r, ids) for r, ids in results if r.status == 503]
        if not rejected:
            self.skipTest("no 503 under this load (statuses %s)" % statuses)
        for r, ids in rejected[:20]:
            self.assertEqual(r.headers.get("retry-after"), "1", r.describe())
            self.assertEqual(r.err_code(), "overloaded", r.describe())
            for m in ids:
                st = self.ok(s.get("/v1/debug/messages/" + m)).json
                self.assertFalse(st["stored"], "call %s of a 503 request was stored" % m)
        for r, ids in [x for x in results if x[0].status == 200][:20]:
            self.assertTrue(self.ok(s.get("/v1/debug/messages/" + ids[-1])).json["stored"])
        self.assert_verify_ok()


# --------------------------------------------------------------------------------------------
# Time
# --------------------------------------------------------------------------------------------

class TimeTest(ServerTest):
    """Tests run in name order and share the virtual clock; each reads srv.now."""

    def test_1_window_exit_on_advance_exact_ms(self):
        s = self.srv
        now = s.now
        self.ok(s.call("track", {"userId": "tm-1", "event": "Tw", "timestamp": iso(now - H)}))
        s.create_segment("tm_day", 'performed "Tw" within 1d')
        self.assertEqual(s.members("tm_day"), ["tm-1"])
        last = s.last_seq()
        r = self.ok(s.advance("23h"), "advance 23h")
        self.assertEqual(parse_iso(r.json["now"]), now + 23 * H, r.describe())
        self.assertEqual(s.members("tm_day"), ["tm-1"], "still inside at t+1d exactly")
        r = self.ok(s.advance("1ms"), "advance 1ms")
        self.assertEqual(r.json["now"], iso(now + 23 * H + 1), r.describe())
        self.assertGreaterEqual(r.json["changes"], 1, r.describe())
        self.assertEqual(s.members("tm_day"), [])
        ch = s.all_changes("tm_day", after=last)
        self.assertEqual([(c["profile"], c["kind"], c["cause"]) for c in ch],
                         [("tm-1", "exit", "time")])
        self.assertEqual(parse_iso(ch[0]["event_time"]), now + 23 * H + 1,
                         "a time change's event_time is the deadline: %s" % ch[0])

    def test_2_exit_seen_on_sse(self):
        s = self.srv
        now = s.now
        self.ok(s.call("track", {"userId": "tm-2", "event": "Tsse", "timestamp": iso(now - 1)}))
        s.create_segment("tm_sse", 'performed "Tsse" within 1h')
        sse = SSE(s, "/v1/changes?segment=tm_sse")
        try:
            self.ok(s.advance("2h"))
            evs = sse.take(1, timeout=10)
            self.assertEqual([(c["profile"], c["kind"], c["cause"]) for _, _, c in evs],
                             [("tm-2", "exit", "time")])
        finally:
            sse.close()

    def test_3_call_without_timestamp_takes_virtual_receive_time(self):
        s = self.srv
        s.create_segment("tm_nots", 'performed "NoTs" within 1h')
        self.ok(s.call("track", {"userId": "tm-3", "event": "NoTs"}))
        self.assertEqual(s.members("tm_nots"), [], "an event at now counts from now + 1ms")
        self.ok(s.advance("1ms"))
        ex = s.get("/v1/profiles/tm-3/explain?segment=tm_nots").describe()
        self.assertEqual(s.members("tm_nots"), ["tm-3"],
                         "the receive time must be the virtual clock; " + ex)
        self.ok(s.advance("1h"))
        self.assertEqual(s.members("tm_nots"), [])

    def test_4_window_opens_on_advance(self):
        s = self.srv
        now = s.now
        s.create_segment("tm_cart",
                         'performed "Tc Added" within 7d not followed by "Tc Order" within 1h')
        self.ok(s.call("track", {"userId": "tm-4", "event": "Tc Added", "timestamp": iso(now - 1)}))
        self.ok(s.call("track", {"userId": "tm-5", "event": "Tc Added", "timestamp": iso(now - 1)}))
        self.ok(s.call("track", {"userId": "tm-5", "event": "Tc Order",
                                 "timestamp": iso(now + 30 * M)}))
        last = s.last_seq()
        self.ok(s.advance("59m"))
        self.assertEqual(s.members("tm_cart"), [])
        self.ok(s.advance("2m"))
        self.assertEqual(s.members("tm_cart"), ["tm-4"])
        ch = s.all_changes("tm_cart", after=last)
        self.assertEqual([(c["profile"], c["kind"], c["cause"]) for c in ch],
                         [("tm-4", "enter", "time")])

    def test_5_clock_set_and_bad_requests(self):
        s = self.srv
        target = s.now + 5 * M
        r = self.ok(s.set_clock(iso(target)))
        self.assertEqual(parse_iso(r.json["now"]), target)
        self.expect(s.post("/v1/debug/clock", {"advance": "soon"}), 400, "bad duration")
        r = s.set_clock(iso(target - H))
        self.expect_error(r, 409, "failed_precondition", "moving the clock back")
        r = self.ok(s.advance("0s"), "advance 0s")
        self.assertEqual(parse_iso(r.json["now"]), target, "the clock did not move back")

    def test_6_restart_with_later_clock_emits_missed_changes(self):
        s = self.srv
        now = s.now
        self.ok(s.call("track", {"userId": "tm-r1", "event": "Tr", "timestamp": iso(now - H)}))
        self.ok(s.call("track", {"userId": "tm-r2", "event": "Tr", "timestamp": iso(now - H)}))
        self.ok(s.call("track", {"userId": "tm-r2", "event": "Tr", "timestamp": iso(now + 3 * D)}))
        self.ok(s.call("track", {"userId": "tm-r3", "event": "Tr Added",
                                 "timestamp": iso(now - 10 * M)}))
        s.create_segment("tm_r_day", 'performed "Tr" within 1d')
        s.create_segment("tm_r_week", 'performed "Tr" within 7d')
        s.create_segment("tm_r_cart",
                         'performed "Tr Added" within 7d not followed by "Tr Order" within 1h')
        self.assertEqual(s.members("tm_r_day"), ["tm-r1", "tm-r2"])
        self.assertEqual(s.members("tm_r_cart"), [])
        last = s.last_seq()
        later = iso(now + 2 * D)
        secs = s.restart(clock=later, label="TimeTest restart with a later --clock")
        ch = s.all_changes(after=last)
        got = sorted((c["segment"], c["profile"], c["kind"], c["cause"]) for c in ch)
        self.assertEqual(got, [("tm_r_cart", "tm-r3", "enter", "time"),
                               ("tm_r_day", "tm-r1", "exit", "time"),
                               ("tm_r_day", "tm-r2", "exit", "time")],
                         "changes for windows that closed/opened while down")
        self.assertEqual(s.members("tm_r_week"), ["tm-r1", "tm-r2"])
        for c in ch:
            self.assertEqual(c["cause"], "time")
        self.assert_verify_ok()
        # the future event of tm-r2 (now + 3d) enters tm_r_day when the clock passes it
        self.ok(s.advance("1d"))
        self.ok(s.advance("1ms"))
        self.assertEqual(s.members("tm_r_day"), ["tm-r2"])

    def test_7_erased_profile_has_no_pending_deadlines(self):
        s = self.srv
        now = s.now
        s.create_segment("tm_er", 'performed "Fe" within 1d')
        self.ok(s.call("track", {"userId": "tm-er", "event": "Fe", "timestamp": iso(now - H)}))
        self.ok(s.call("track", {"userId": "tm-er", "event": "Fe", "timestamp": iso(now + H)}))
        self.assertEqual(s.members("tm_er"), ["tm-er"])
        self.ok(s.delete("/v1/profiles/tm-er"))
        last = s.last_seq()
        self.ok(s.advance("2h"))   # the future event would count now
        self.ok(s.advance("2d"))   # and its window would close
        self.assertEqual(s.all_changes("tm_er", after=last), [],
                         "an erased profile's events and deadlines must be gone")
        self.assertEqual(s.members("tm_er"), [])
        self.assert_verify_ok()


# --------------------------------------------------------------------------------------------
# Operations
# --------------------------------------------------------------------------------------------

class OpsTest(ServerTest):
    CLOCK = None  # real clock

    def test_healthz(self):
        r = self.srv.get("/healthz", auth=None)
        self.ok(r)
        self.assertEqual(r.json, {"status": "ok"})

    def test_listening_line(self):
        self.assertIn("listening on http://127.0.0.1:%d" % self.srv.port,
                      open(self.srv.log_path, encoding="utf-8", errors="replace").read())

    def test_metrics(self):
        s = self.srv
        s.create_segment("ops_seg", 'plan = "ops"')
        r0 = self.ok(s.get("/metrics", auth=None))
        self.ok(s.batch([{"type": "identify", "userId": "ops-%d" % i, "traits": {"plan": "ops"},
                          "messageId": mid()} for i in range(3)]))
        dupe = mid()
        self.ok(s.call("track", {"userId": "ops-0", "event": "E", "messageId": dupe}))
        self.ok(s.call("track", {"userId": "ops-0", "event": "E", "messageId": dupe}))
        # api.md: engine figures (segment sizes, ...) are refreshed every 5 s: allow 8 s.
        deadline = time.monotonic() + 8
        while True:
            r = self.ok(s.get("/metrics", auth=None), "metrics without credential")
            if 'shoal_segment_size{segment="ops_seg"} 3' in r.text or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertTrue(r.headers.get("content-type", "").startswith("text/plain"), r.headers)
        text = r.text
        for name in ("shoal_ingest_messages_total", "shoal_ingest_duplicates_total",
                     "shoal_ingest_rejected_total", "shoal_ack_latency_seconds_bucket",
                     "shoal_ack_latency_seconds_sum", "shoal_ack_latency_seconds_count",
                     "shoal_changes_total", "shoal_change_log_seq", "shoal_stream_clients",
                     "shoal_segment_size{", "shoal_timer_queue_depth", "shoal_store_bytes",
                     "shoal_profiles", "shoal_commit_groups_total"):
            self.assertIn(name, text, "metric %s missing" % name)
        self.assertIn("# TYPE shoal_ack_latency_seconds histogram", text)

        def val(t, name):  # the sum of the samples of a metric (any labels)
            total = None
            for line in t.splitlines():
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    total = (total or 0) + float(line.split()[-1])
            return total

        m0 = val(r0.text, "shoal_ingest_messages_total")
        m1 = val(text, "shoal_ingest_messages_total")
        self.assertIsNotNone(m1, "unlabelled shoal_ingest_messages_total sample")
        self.assertGreaterEqual(m1 - (m0 or 0), 4, "ingest counter moved by %s" % (m1 - (m0 or 0)))
        d0 = val(r0.text, "shoal_ingest_duplicates_total")
        d1 = val(text, "shoal_ingest_duplicates_total")
        self.assertGreaterEqual(d1 - (d0 or 0), 1)
        self.assertGreaterEqual(val(text, "shoal_profiles"), 3)
        self.assertIn('shoal_segment_size{segment="ops_seg"} 3', text)

    def test_concurrent_requests_share_commit_groups(self):
        s = self.srv

        def groups():
            for line in s.get("/metrics", auth=None).text.splitlines():
                if line.startswith("shoal_commit_groups_total "):
                    return float(line.split()[-1])
            self.fail("shoal_commit_groups_total missing")

        g0 = groups()

        def worker(t):
            for i in range(20):
                s.call("track", {"userId": "ops-g%d" % t, "event": "G"})

        ths = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
        for t in ths:
            t.start()
        for t in ths:
            t.join(60)
        dg = groups() - g0
        self.assertLess(dg, 150, "160 concurrent requests took %d commit groups (fsyncs)" % dg)

    def test_sent_at_skew_on_the_real_clock(self):
        # Same as DedupTest's skew test, on a server without --clock: tells a missing correction
        # apart from a receive time taken from the wrong clock. Margins of minutes.
        s = self.srv
        s.create_segment("ops_skew_15m", 'performed "Ops Skew" within 15m')
        s.create_segment("ops_skew_5m", 'performed "Ops Skew" within 5m')
        now = int(time.time() * 1000)
        self.ok(s.batch([{"type": "track", "userId": "ops-skew", "event": "Ops Skew",
                          "messageId": mid(), "timestamp": iso(now + 50 * M)}],
                        sentAt=iso(now + H)))
        self.assertEqual(s.members("ops_skew_15m"), ["ops-skew"])
        self.assertEqual(s.members("ops_skew_5m"), [])

    def test_clock_endpoint_409_without_clock(self):
        r = self.srv.post("/v1/debug/clock", {"advance": "1d"})
        self.expect_error(r, 409, "failed_precondition", "debug clock without --clock")

    def test_verify_reports_segments(self):
        s = self.srv
        s.create_segment("ops_v", 'plan = "ops"')
        j = self.assert_verify_ok()
        v = j["segments"].get("ops_v")
        self.assertIsNotNone(v, j)
        self.assertEqual(v["live"], v["reference"])
        self.assertEqual(v["live"], v["persisted"])
        self.assertTrue(v["ok"])

    def test_messages_lookup(self):
        m = mid()
        self.assertFalse(self.ok(self.srv.get("/v1/debug/messages/" + m)).json["stored"])
        self.ok(self.srv.call("track", {"userId": "ops-m", "event": "E", "messageId": m}))
        self.assertTrue(self.ok(self.srv.get("/v1/debug/messages/" + m)).json["stored"])


# --------------------------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------------------------

def ndjson(calls):
    return "".join((c if isinstance(c, str) else json.dumps(c)) + "\n" for c in calls).encode()


class ImportTest(ServerTest):

    def post_chunked(self, path, data, chunk=700):
        conn = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=60)

        def gen():
            for i in range(0, len(data), chunk):
                yield data[i:i + chunk]

        conn.request("POST", path, body=gen(), encode_chunked=True,
                     headers={"Authorization": basic(WRITE_KEY),
                              "Content-Type": "application/x-ndjson",
                              "Transfer-Encoding": "chunked"})
        r = conn.getresponse()
        body = r.read()
        conn.close()
        return Resp("POST", path, "(chunked NDJSON %d bytes)" % len(data), r.status,
                    {k.lower(): v for k, v in r.getheaders()}, body)

    def test_http_import_ndjson_with_bad_lines(self):
        s = self.srv
        s.create_segment("im_seg", 'performed "Imported" and plan = "imp"')
        lines = [
            {"type": "identify", "userId": "im-1", "traits": {"plan": "imp"},
             "messageId": "im-a", "timestamp": past(3 * H)},
            {"type": "track", "userId": "im-1", "event": "Imported", "messageId": "im-b",
             "timestamp": past(2 * H)},
            '{"type": "track", "userId": ',
            {"type": "identify", "userId": "im-2", "traits": {"plan": "imp"},
             "messageId": "im-c", "timestamp": past(3 * H)},
            {"type": "track", "userId": "im-2", "messageId": "im-d", "timestamp": past(2 * H)},
            {"type": "track", "userId": "im-2", "event": "Imported", "messageId": "im-e",
             "timestamp": past(2 * H)},
            "",  # blank lines are skipped
        ]
        r = self.post_chunked("/v1/import", ndjson(lines))
        self.expect(r, 400, "import with rejected lines")
        j = r.json or {}
        self.assertEqual((j.get("success"), j.get("rejected")), (False, 2), r.describe())
        self.assertEqual(j.get("accepted"), 4, r.describe())
        self.assertEqual(j.get("duplicates"), 0, r.describe())
        errs = j.get("errors") or []
        self.assertEqual(sorted(e.get("line") for e in errs), [3, 5],
                         "1-based line numbers of the bad lines: " + r.describe())
        self.assertEqual([e.get("field") for e in errs if e.get("line") == 5], ["event"])
        self.assertEqual(s.members("im_seg"), ["im-1", "im-2"])
        # importing the same file again: all duplicates
        r = self.post_chunked("/v1/import", ndjson(lines))
        self.assertEqual(((r.json or {}).get("accepted"), (r.json or {}).get("duplicates")),
                         (0, 4), r.describe())
        self.assertEqual(s.all_changes("im_seg")[-1]["segment_seq"], 2)

    def test_http_import_gzip_body(self):
        lines = [{"type": "track", "userId": "im-gz-%d" % (i % 40), "event": "Gz",
                  "messageId": "im-gz-%d" % i, "timestamp": past(H),
                  "properties": {"pad": "y" * 200}} for i in range(2000)]
        packed = gzip.compress(ndjson(lines))
        conn = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=60)
        conn.request("POST", "/v1/import", body=packed,
                     headers={"Authorization": basic(WRITE_KEY), "Content-Encoding": "gzip",
                              "Content-Type": "application/x-ndjson"})
        r = conn.getresponse()
        body = json.loads(r.read() or b"{}")
        conn.close()
        self.assertEqual((r.status, body.get("accepted"), body.get("rejected")), (200, 2000, 0),
                         body)
        self.srv.create_segment("im_gz", 'performed "Gz" at least 50 times')
        self.assertEqual(len(self.srv.members("im_gz")), 40)
        # A corrupt gzip body is a 400 that says so.
        conn = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=60)
        conn.request("POST", "/v1/import", body=packed[:20] + b"garbage" * 20,
                     headers={"Authorization": basic(WRITE_KEY), "Content-Encoding": "gzip"})
        r = conn.getresponse()
        text = r.read().decode()
        conn.close()
        self.assertEqual(r.status, 400, text)
        self.assertIn("gzip", text)

    def test_http_import_needs_write_key(self):
        # openapi.yaml: the write key by Basic only; the admin token is accepted too
        body = ndjson([{"type": "track", "userId": "im-auth", "event": "E", "messageId": mid()}])
        for label, auth in [("no credential", None), ("wrong key", basic("nope")),
                            ("wrong token", "Bearer nope")]:
            r = self.srv.post("/v1/import", body, auth=auth)
            self.expect_error(r, 401, "unauthorized", label)
        self.expect(self.srv.get("/v1/profiles/im-auth"), 404, "rejected import stored")

    def test_http_import_error_cap_and_long_body(self):
        lines = ["not json %d" % i for i in range(150)]
        lines += [{"type": "track", "userId": "im-cap-%d" % (i % 50), "event": "Cap",
                   "messageId": "im-cap-%d" % i, "timestamp": past(H),
                   "properties": {"pad": "x" * 120}} for i in range(3000)]
        data = ndjson(lines)  # > 500 KB: import has no body limit
        self.assertGreater(len(data), 500 * 1024)
        r = self.post_chunked("/v1/import", data, chunk=64 * 1024)
        j = r.json or {}
        self.assertEqual(j.get("accepted"), 3000, r.describe())
        self.assertEqual(len(j.get("errors") or []), 100, "at most 100 errors: " + r.describe())
        self.assertEqual([e["line"] for e in j["errors"]][:3], [1, 2, 3])

    def test_cli_import_refused_while_server_runs(self):
        path = os.path.join(self.srv.dir, "running.ndjson")
        with open(path, "wb") as f:
            f.write(ndjson([{"type": "identify", "userId": "im-run", "traits": {"a": 1},
                             "messageId": mid(), "timestamp": past(H)}]))
        p = subprocess.run([self.srv.bin, "import", path, "--data-dir", self.srv.data_dir],
                           capture_output=True, timeout=60)
        self.assertNotEqual(p.returncode, 0, "shoal import on a live data dir must refuse: %s"
                            % p.stdout[-500:])
        self.ok(self.srv.get("/healthz", auth=None), "server still healthy")
        self.ok(self.srv.call("identify", {"userId": "im-run", "traits": {"b": 2}}),
                "server still ingests")
        self.assertEqual(self.srv.traits("im-run"), {"b": 2},
                         "the refused import must not have written anything")

    def test_cli_import_csv_with_bom(self):
        # Excel's "CSV UTF-8" export starts with a byte order mark
        srv = Server("ImportBom")
        try:
            path = os.path.join(srv.dir, "excel.csv")
            with open(path, "wb") as f:
                f.write(("\ufeffuserId,timestamp,tier\r\nbom-1,%s,gold\r\n" % past(H))
                        .encode("utf-8"))
            p = subprocess.run([srv.bin, "import", path, "--data-dir", srv.data_dir,
                                "--no-progress", "--csv-type", "identify"],
                               capture_output=True, timeout=60)
            out = (p.stdout + p.stderr).decode("utf-8", "replace")
            self.assertEqual(p.returncode, 0, "shoal import %s (BOM + header userId,timestamp,"
                             "tier) -> exit %d: %s" % (path, p.returncode, out.strip()[-400:]))
            srv.start()
            self.assertEqual(srv.traits("bom-1"), {"tier": "gold"})
        finally:
            srv.cleanup()

    def test_zz_cli_import_then_serve(self):
        s = self.srv
        s.create_segment("im_cli_seg", 'performed "Cli Imported" at least 2 times')
        s.stop()
        path = os.path.join(s.dir, "cli.ndjson")
        lines = [{"type": "identify", "userId": "im-cli-%d" % i, "traits": {"src": "cli"},
                  "messageId": "im-cli-id-%d" % i, "timestamp": past(5 * H)} for i in range(20)]
        lines += [{"type": "track", "userId": "im-cli-%d" % (i % 20), "event": "Cli Imported",
                   "messageId": "im-cli-tr-%d" % i, "timestamp": past(4 * H)} for i in range(30)]
        lines.append("{broken")
        with open(path, "wb") as f:
            f.write(ndjson(lines))
        p = subprocess.run([s.bin, "import", path, "--data-dir", s.data_dir, "--no-progress"],
                           capture_output=True, timeout=120)
        out = (p.stdout + p.stderr).decode("utf-8", "replace")
        # a rejected line may make the exit code non-zero; it must be reported with its number
        self.assertIn("cli.ndjson:51", out, "the broken line 51 must be reported: " + out[-1000:])
        csv_path = os.path.join(s.dir, "traits.csv")
        with open(csv_path, "w") as f:
            f.write("userId,timestamp,tier\nim-csv-1,%s,gold\nim-csv-2,%s,silver\n"
                    % (past(5 * H), past(5 * H)))
        p = subprocess.run([s.bin, "import", csv_path, "--data-dir", s.data_dir, "--no-progress",
                            "--csv-type", "identify"], capture_output=True, timeout=120)
        self.assertEqual(p.returncode, 0, "clean CSV import: " + (p.stdout + p.stderr)
                         .decode("utf-8", "replace")[-1000:])
        secs = s.start()
        RESTART_TIMES.append(("ImportTest start after CLI import", secs))
        self.assertEqual(s.traits("im-cli-7"), {"src": "cli"})
        self.assertEqual(s.traits("im-csv-2"), {"tier": "silver"}, "CSV identify import")
        self.assertEqual(s.members("im_cli_seg"), sorted("im-cli-%d" % i for i in range(10)))
        st = self.ok(s.get("/v1/debug/messages/im-cli-tr-29")).json
        self.assertTrue(st["stored"], "imported messageIds are known to dedup")
        r = self.ok(s.batch([{"type": "track", "userId": "im-cli-0", "event": "Cli Imported",
                              "messageId": "im-cli-tr-0", "timestamp": past(4 * H)}]))
        self.assertEqual(r.json["duplicates"], 1, "re-sent imported call must be a duplicate")
        self.assert_verify_ok()


# --------------------------------------------------------------------------------------------
# Crash test
# --------------------------------------------------------------------------------------------

class CrashTest(unittest.TestCase):

    def test_sigkill_under_load_loses_nothing_acknowledged(self):
        seed = int(os.environ.get("SHOAL_E2E_SEED") or random.randrange(1, 10 ** 9))
        print("\n  CrashTest seed=%d (SHOAL_E2E_SEED=%d to replay)" % (seed, seed), flush=True)
        rng = random.Random(seed)
        rounds = int(os.environ.get("SHOAL_E2E_CRASH_ROUNDS") or 4)
        srv = Server("CrashTest", clock=None)
        try:
            srv.start()
            for name, d in [("cr_load3", 'performed "Load" at least 3 times'),
                            ("cr_p1", 'plan = "p1"'),
                            ("cr_recent", 'performed "Load" within 1h and plan = "p0"')]:
                srv.create_segment(name, d)
            ddl = {}  # segment name -> acknowledged definition, None (deleted) or "?" (in flight)
            acked = []  # acknowledged messageIds, in order
            checked = 0  # acked[:checked] were verified after an earlier crash
            batches = []
            for rnd in range(rounds):
                nthreads = rng.randint(2, 4)
                kill_after = rng.uniform(0.3, 1.2)
                stop = threading.Event()
                lock = threading.Lock()
                errors = []

                def worker(tid, wseed):
                    wr = random.Random(wseed)
                    n = 0
                    while not stop.is_set():
                        calls = []
                        for _ in range(wr.randint(5, 40)):
                            n += 1
                            m = "cr-%d-%d-%d" % (rnd, tid, n)
                            u = "cr-u%03d" % wr.randrange(200)
                            if wr.random() < 0.3:
                                calls.append({"type": "identify", "userId": u, "messageId": m,
                                              "traits": {"plan": wr.choice(["p0", "p1"])}})
                            else:
                                calls.append({"type": "track", "userId": u, "messageId": m,
                                              "event": "Load", "properties": {"n": n}})
                        try:
                            r = srv.batch(calls)
                        except (OSError, http.client.HTTPException):
                            return  # the server died: this batch is not acknowledged
                        if r.status == 200:
                            with lock:
                                acked.extend(c["messageId"] for c in calls)
                                batches.append(calls)
                        elif r.status != 503:
                            with lock:
                                errors.append(r.describe())
                            return

                def admin_worker(wseed):
                    # segment definitions are acknowledged writes too
                    wr = random.Random(wseed)
                    k = 0
                    while not stop.is_set():
                        k += 1
                        name = "cr_dyn_%d_%d" % (rnd, k)
                        d = 'performed "Load" at least %d times' % wr.randint(1, 9)
                        try:
                            r = srv.post("/v1/segments", {"name": name, "definition": d})
                            if r.status != 201:
                                with lock:
                                    errors.append(r.describe())
                                return
                            ddl[name] = r.json["definition"]  # canonical
                            if wr.random() < 0.5:
                                d2 = 'performed "Load" at least %d times' % wr.randint(1, 9)
                                ddl[name] = "?"
                                r = srv.put("/v1/segments/" + name, {"definition": d2})
                                if r.status != 200:
                                    with lock:
                                        errors.append(r.describe())
                                    return
                                ddl[name] = r.json["definition"]
                            if wr.random() < 0.3:
                                ddl[name] = "?"
                                r = srv.delete("/v1/segments/" + name)
                                if r.status != 204:
                                    with lock:
                                        errors.append(r.describe())
                                    return
                                ddl[name] = None
                        except (OSError, http.client.HTTPException):
                            ddl[name] = "?"  # in flight at the kill: either outcome is fine
                            return

                ths = [threading.Thread(target=worker, args=(t, rng.randrange(10 ** 9)))
                       for t in range(nthreads)]
                ths.append(threading.Thread(target=admin_worker, args=(rng.randrange(10 ** 9),)))
                for t in ths:
                    t.start()
                time.sleep(kill_after)  # a random kill point under load
                srv.proc.send_signal(signal.SIGKILL)
                srv.proc.wait()
                stop.set()
                for t in ths:
                    t.join(30)
                self.assertEqual(errors, [], "unexpected answers under load")
                secs = srv.start()
                RESTART_TIMES.append(("CrashTest round %d (%d threads, kill at %.2fs, %d acked)"
                                      % (rnd + 1, nthreads, kill_after, len(acked)), secs))
                print("  round %d: %d threads, SIGKILL after %.2fs, %d acked so far, "
                      "restart %.3fs" % (rnd + 1, nthreads, kill_after, len(acked), secs),
                      flush=True)
                self.assertGreater(len(acked), 0, "no batch was acknowledged in round %d" % rnd)
                missing = []
                fresh = acked[checked:]
                old = rng.sample(acked[:checked], min(300, checked))
                checked = len(acked)
                for m in fresh + old:
                    r = srv.get("/v1/debug/messages/" + m)
                    if r.status != 200 or not (r.json or {}).get("stored"):
                        missing.append((m, r.status, r.text[:100]))
                        if len(missing) > 20:
                            break
                self.assertEqual(missing, [], "acknowledged messageIds lost after SIGKILL "
                                 "(seed %d, round %d)" % (seed, rnd + 1))
                for name, d in ddl.items():
                    if d == "?":
                        continue
                    r = srv.get("/v1/segments/" + name)
                    if d is None:
                        self.assertEqual(r.status, 404, "acked delete lost: " + r.describe())
                    else:
                        self.assertEqual(r.status, 200, "acked segment lost: " + r.describe())
                        self.assertEqual(r.json["definition"], d, "acked PUT lost: " + r.describe())
                check_verify(self, srv, "verify after crash (seed %d round %d)" % (seed, rnd + 1))
                # the change log has no gap and no duplicate per segment
                log = srv.all_changes()
                seqs = [c["seq"] for c in log]
                self.assertEqual(seqs, sorted(set(seqs)), "global seq after crash")
                per = {}
                for c in log:
                    per.setdefault(c["segment"], []).append(c["segment_seq"])
                for seg, ss in per.items():
                    self.assertEqual(ss, list(range(1, len(ss) + 1)),
                                     "segment_seq of %s after crash round %d" % (seg, rnd + 1))
                # a retried acknowledged batch is all duplicates after the crash
                b = rng.choice(batches)
                r = srv.batch(b)
                self.assertEqual(r.status, 200, r.describe())
                self.assertEqual((r.json["accepted"], r.json["duplicates"]), (0, len(b)),
                                 "retry of an acked batch after crash: " + r.describe())
        finally:
            srv.cleanup()


    def test_sigkill_during_http_import(self):
        srv = Server("CrashTestImport", clock=None)
        try:
            srv.start()
            srv.create_segment("ci_seg", 'performed "Imp" at least 2 times')
            data = ndjson([{"type": "track", "userId": "ci-u%d" % (i % 300), "event": "Imp",
                            "messageId": "ci-%d" % i, "properties": {"i": i}}
                           for i in range(60000)])
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)

            def gen(pace=0.0):
                for i in range(0, len(data), 32 * 1024):
                    if pace:
                        time.sleep(pace)  # client pacing, so that the kill lands mid-import
                    yield data[i:i + 32 * 1024]

            def send():
                try:
                    conn.request("POST", "/v1/import", body=gen(0.005), encode_chunked=True,
                                 headers={"Authorization": basic(WRITE_KEY),
                                          "Transfer-Encoding": "chunked"})
                    conn.getresponse().read()
                except (OSError, http.client.HTTPException):
                    pass

            th = threading.Thread(target=send)
            th.start()
            time.sleep(0.4)
            srv.proc.send_signal(signal.SIGKILL)
            srv.proc.wait()
            th.join(30)
            secs = srv.start()
            RESTART_TIMES.append(("CrashTest restart after SIGKILL during import", secs))
            check_verify(self, srv, "verify after SIGKILL during import")
            log = srv.all_changes("ci_seg")
            self.assertEqual([c["segment_seq"] for c in log], list(range(1, len(log) + 1)))
            # the import can be re-run: what was committed counts as duplicates
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
            conn.request("POST", "/v1/import", body=gen(), encode_chunked=True,
                         headers={"Authorization": basic(WRITE_KEY),
                                  "Transfer-Encoding": "chunked"})
            resp = conn.getresponse()
            j = json.loads(resp.read())
            self.assertEqual(j.get("accepted", 0) + j.get("duplicates", 0), 60000, j)
            print("\n  import killed after 0.4s: %d lines had been committed"
                  % j.get("duplicates", 0), flush=True)
            self.assertEqual(srv.count("ci_seg"), 300)
            check_verify(self, srv, "verify after the re-import")
        finally:
            srv.cleanup()

    def test_sigterm_under_load_is_clean(self):
        srv = Server("CrashTestTerm", clock=None)
        try:
            srv.start()
            srv.create_segment("ct_load", 'performed "Load" at least 2 times')
            acked, stop, lock = [], threading.Event(), threading.Lock()

            def worker(tid):
                n = 0
                while not stop.is_set():
                    calls = []
                    for _ in range(20):
                        n += 1
                        calls.append({"type": "track", "userId": "ct-u%d" % (n % 50),
                                      "event": "Load", "messageId": "ct-%d-%d" % (tid, n)})
                    try:
                        r = srv.batch(calls)
                    except (OSError, http.client.HTTPException):
                        return
                    if r.status == 200:
                        with lock:
                            acked.extend(c["messageId"] for c in calls)

            ths = [threading.Thread(target=worker, args=(t,)) for t in range(3)]
            for t in ths:
                t.start()
            time.sleep(0.5)
            t0 = time.monotonic()
            srv.proc.send_signal(signal.SIGTERM)
            try:
                code = srv.proc.wait(15)
            except subprocess.TimeoutExpired:
                code = "still running after 15 s"
            took = time.monotonic() - t0
            stop.set()
            for t in ths:
                t.join(30)
            self.assertEqual(code, 0, "exit code after SIGTERM under load; log:\n" + srv.log_tail())
            print("\n  SIGTERM under load: exit 0 after %.2fs, %d calls acked" % (took, len(acked)),
                  flush=True)
            secs = srv.start()
            RESTART_TIMES.append(("CrashTest restart after SIGTERM under load", secs))
            lost = [m for m in acked if not srv.get("/v1/debug/messages/" + m).json["stored"]]
            self.assertEqual(lost[:10], [], "%d acknowledged calls lost after SIGTERM" % len(lost))
            check_verify(self, srv, "verify after SIGTERM under load")
        finally:
            srv.cleanup()


# --------------------------------------------------------------------------------------------
# Real SDKs (node)
# --------------------------------------------------------------------------------------------

class SdkClientsTest(unittest.TestCase):

    def test_segment_and_rudderstack_sdks(self):
        node = shutil.which("node")
        self.assertIsNotNone(node, "node is required for the SDK test and was not found")
        cdir = os.path.join(HERE, "clients")
        self.assertTrue(os.path.isdir(os.path.join(cdir, "node_modules")),
                        "run `npm ci` in tests/server/clients (run.sh does it)")
        srv = Server("SdkClientsTest", clock=None)
        try:
            srv.start()
            env = dict(os.environ, SHOAL_URL="http://127.0.0.1:%d" % srv.port,
                       SHOAL_WRITE_KEY=WRITE_KEY, SHOAL_ADMIN_TOKEN=ADMIN_TOKEN)
            p = subprocess.run([node, "clients_test.mjs"], cwd=cdir, env=env,
                               capture_output=True, timeout=90)
            out = (p.stdout + p.stderr).decode("utf-8", "replace")
            out = "\n".join("    node: " + l for l in out.strip().splitlines())
            print("\n" + out, flush=True)
            fails = [l.strip() for l in out.splitlines() if "node: FAIL" in l]
            self.assertEqual(p.returncode, 0, "clients_test.mjs: %s\n%s" % ("; ".join(fails)[:600],
                                                                           out[-4000:]))
        finally:
            srv.cleanup()


# --------------------------------------------------------------------------------------------
# Runner: one line per test, then "N passed, M failed"
# --------------------------------------------------------------------------------------------

class LineResult(unittest.TestResult):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.passed = 0
        self.failed_list = []
        self.t0 = {}

    def startTest(self, test):
        super().startTest(test)
        self.t0[test.id()] = time.monotonic()

    def _name(self, test):
        return test.id().split(".", 1)[-1]

    def _el(self, test):
        return time.monotonic() - self.t0.get(test.id(), time.monotonic())

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed += 1
        print("PASS %s (%.2fs)" % (self._name(test), self._el(test)), flush=True)

    def _fail(self, test, err, kind):
        exc = err[1]
        msg = str(exc).strip().splitlines()
        first = msg[0] if msg else type(exc).__name__
        name = self._name(test) if hasattr(test, "_testMethodName") else str(test)
        print("FAIL %s (%.2fs): %s%s" % (name, self._el(test), kind, first[:400]), flush=True)
        self.failed_list.append((name, self._exc_info_to_string(err, test)))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        print("SKIP %s: %s" % (self._name(test), reason), flush=True)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._fail(test, err, "")

    def addError(self, test, err):
        super().addError(test, err)
        self._fail(test, err, "error: ")


def main(argv):
    verbose = "-v" in argv
    names = [a for a in argv if not a.startswith("-")]
    loader = unittest.TestLoader()
    mod = sys.modules[__name__]
    suite = loader.loadTestsFromNames(names, mod) if names else loader.loadTestsFromModule(mod)
    if not os.environ.get("SHOAL_BIN"):
        print("FAIL setup: SHOAL_BIN is not set")
        print("0 passed, 1 failed")
        return 1
    result = LineResult()
    t0 = time.monotonic()
    suite.run(result)
    if result.failed_list:
        print("\n==== failure details ====")
        for name, tb in result.failed_list:
            print("\n--- %s ---" % name)
            print(tb if verbose else tb[-3000:])
    if RESTART_TIMES:
        print("\n==== start/restart times (process start to /healthz 200) ====")
        for label, secs in RESTART_TIMES:
            print("  %-70s %.3fs" % (label, secs))
        crash = [s for l, s in RESTART_TIMES if l.startswith("CrashTest")]
        if crash:
            print("  CrashTest restarts: max %.3fs, mean %.3fs" % (max(crash),
                                                                   sum(crash) / len(crash)))
    if not os.environ.get("SHOAL_E2E_KEEP"):
        shutil.rmtree(TMP_ROOT, ignore_errors=True)
    else:
        print("kept temp dirs and logs under", TMP_ROOT)
    print("python suite: %.1fs" % (time.monotonic() - t0))
    failed = len(result.failed_list)
    print("%d passed, %d failed" % (result.passed, failed))
    return 1 if failed or result.testsRun == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

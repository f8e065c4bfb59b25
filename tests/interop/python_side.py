"""Python side of the cachekit-py <-> cachekit-rs interop test (memcached fleet).

Usage: python python_side.py --servers H:P1,H:P2,H:P3 [--master-key HEX] write|read|keys
  write  call every function once (each must miss and run its body); one JSON line per call
         {"fn","args","kwargs","key","server","hrw","value_hex","ran"}; exit 1 unless every body
         ran and every key is found on a server.
  read   call every function again; one JSON line per call {"fn","args","kwargs","key","hit","value"};
         exit 0 only if every call was a hit (body did not run). A miss, or a plain entry that fails
         to decode, runs the body, which stores Python's own entry over it: check once per write. With
         --master-key a failed decryption raises (fail_closed) and is reported as "error", not rewritten.
  keys   no calls; one JSON line per call {"fn","args","kwargs","key","server","hrw"}.
"server": null if no server holds the key, a list if several do (write then exits 1).
"server" is the host:port whose own `get` returns the key; "hrw" is the server pymemcache's
HashClient picks for it. Plain entries live in namespaces users/vec, encrypted ones (--master-key)
in susers/svec, so they never share keys.

Findings on cachekit 0.24.1 + pymemcache 4.0.0 (paths relative to site-packages):
- Fleet: `MemcachedBackend(MemcachedBackendConfig(servers=["h:p", ...]))`, passed as `backend=`
  (cachekit/backends/memcached/{config,backend}.py). Without backend=, env CACHEKIT_MEMCACHED_SERVERS
  selects it (backends/provider.py, DefaultBackendProvider._SELECTORS). The config is a pydantic
  BaseSettings with env_prefix CACHEKIT_MEMCACHED_ (config.py:51-54), so unset fields still come
  from env: key_prefix="" is passed explicitly (interop refuses a prefix: interop.py
  ensure_interop_backend_compatible). ttl 300 -> memcached exptime 300 (backend.py set).
- Distribution: backend.py:82 builds pymemcache `HashClient(servers=[(host, int(port))...],
  use_pooling=True, ...)` with the default hasher `RendezvousHash` (pymemcache/client/rendezvous.py):
  node name "host:port" (hash.py _make_client_key), score = murmur3_32(f"{node}-{key}", seed=0)
  (x86 32-bit, pymemcache/client/murmur3.py, over code points = ASCII bytes for these keys),
  highest score wins, ties -> max(str). The key hashed is the bare interop key (no prefix).
- Decorators (decorators/intent.py): plain `@cache(backend=b, ttl=300, namespace=ns, interop=op)`;
  encrypted `@cache.secure(master_key=HEX, backend=b, ttl=300, namespace=ns, interop=op)`: interop
  works with .secure (config/decorator.py DecoratorConfig.interop + secure()); master_key is a hex
  str (bytes refused), else CACHEKIT_MASTER_KEY (intent.py:281-290). Interop + encryption is
  single-tenant only (cache_handler.py:736); tenant = deployment_uuid= / CACHEKIT_DEPLOYMENT_UUID
  (must be canonical lowercase-hyphenated in interop mode) / literal "default"
  (cache_handler.py _resolve_single_tenant_id). This script sets no deployment_uuid: run it with
  CACHEKIT_DEPLOYMENT_UUID unset to get tenant "default". fail_closed=True makes a failed decrypt
  raise instead of silently recomputing. l1_enabled=False so every hit comes from memcached.
- Interop keys: `{ns}:{op}:{blake2b256(canonical msgpack of the bound, defaults-applied args)}`
  (interop.py generate_interop_key, bind_flat_args); values: one plain msgpack document, or with
  encryption nonce(12)||AES-256-GCM ct||tag(16) (cache_handler.py _deserialize_interop).
"""

import argparse
import inspect
import json
import sys
from datetime import datetime, timedelta, timezone

from cachekit import cache
from cachekit.backends.memcached import MemcachedBackend, MemcachedBackendConfig
from cachekit.interop import bind_flat_args, generate_interop_key
from pymemcache.client.base import Client

TTL = 300
RAN: list[str] = []  # names of the functions whose bodies ran, in order
DT = datetime(2024, 1, 1, tzinfo=timezone.utc)


def get_user(user_id):
    RAN.append("get_user")
    return {"name": "alice", "age": 30}


def one(x):
    RAN.append("one")
    return {"list": [1, 2, 3], "float": 1.5, "bytes": b"\x00\x01\xff", "none": None, "flag": True, "text": "héllo 日本語 🎉"}


def two(a, b=2):
    RAN.append("two")
    return [a, b, a + b]


def tags(s):
    RAN.append("tags")
    return sorted(s)


def when(ts):
    RAN.append("when")
    return ts + timedelta(days=1, hours=12, minutes=30)


def greet(name):
    RAN.append("greet")
    return f"hi {name}"


# (function, namespace, operation, positional args, keyword args) per call.
CALLS = (
    [(get_user, "users", "get_user", (i,), {}) for i in [42] + list(range(1, 24))]
    + [
        (one, "vec", "one", ([1, "two", 3.5, None, [True, b"\x01"]],), {}),
        (two, "vec", "two", (1,), {"b": 5}),
        (tags, "vec", "tags", ({3, 1, 2},), {}),
        (when, "vec", "when", (DT,), {}),
        (greet, "vec", "greet", ("héllo 日本語 🎉",), {}),
    ]
)


def jsonable(v):
    """A JSON-safe view of a value: bytes as hex, datetimes isoformat, sets sorted."""
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (set, frozenset)):
        return [jsonable(x) for x in sorted(v)]
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    return v


def ns_of(ns, master_key):
    return "s" + ns if master_key else ns


def decorate(backend, master_key):
    """One decorated function per (namespace, operation), in plain or secure interop mode."""
    out = {}
    for fn, ns, op, _, _ in CALLS:
        if (ns, op) in out:
            continue
        common = dict(backend=backend, ttl=TTL, namespace=ns_of(ns, master_key), interop=op, l1_enabled=False)
        if master_key:
            deco = cache.secure(master_key=master_key, fail_closed=True, **common)
        else:
            deco = cache(**common)
        out[(ns, op)] = deco(fn)
    return out


def key_of(fn, ns, op, args, kwargs, master_key):
    return generate_interop_key(ns_of(ns, master_key), op, bind_flat_args(inspect.signature(fn), args, kwargs))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--servers", required=True, help="comma-separated host:port list")
    p.add_argument("--master-key", default=None, help="hex master key: use @cache.secure")
    p.add_argument("mode", choices=["write", "read", "keys"])
    a = p.parse_args()
    servers = a.servers.split(",")
    backend = MemcachedBackend(MemcachedBackendConfig(servers=servers, key_prefix=""))
    raw = {s: Client((s.rsplit(":", 1)[0], int(s.rsplit(":", 1)[1])), connect_timeout=2, timeout=2) for s in servers}

    def holder(key):
        """The servers whose own get returns the key, and the bytes stored there."""
        found = [(s, c.get(key)) for s, c in raw.items()]
        found = [(s, v) for s, v in found if v is not None]
        return found

    funcs = decorate(backend, a.master_key) if a.mode != "keys" else {}
    ok = True
    for fn, ns, op, args, kwargs in CALLS:
        key = key_of(fn, ns, op, args, kwargs, a.master_key)
        rec = {"fn": op, "args": jsonable(args), "kwargs": jsonable(kwargs), "key": key}
        if a.mode in ("write", "read"):
            before = len(RAN)
            try:
                value, err = funcs[(ns, op)](*args, **kwargs), None
            except Exception as e:  # reported, never hidden
                value, err = None, f"{type(e).__name__}: {e}"
            ran = len(RAN) > before
        if a.mode == "read":
            rec.update(hit=not ran and err is None, value=jsonable(value))
            ok &= rec["hit"]
        else:
            found = holder(key)
            rec["server"] = found[0][0] if len(found) == 1 else ([s for s, _ in found] or None)
            rec["hrw"] = backend._client.hasher.get_node(key)
            if a.mode == "write":
                rec.update(value_hex=found[0][1].hex() if found else None, ran=ran)
                ok &= ran and err is None and len(found) == 1
        if a.mode != "keys" and err is not None:
            rec["error"] = err
        print(json.dumps(rec, ensure_ascii=False), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

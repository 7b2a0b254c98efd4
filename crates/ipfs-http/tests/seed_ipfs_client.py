"""The seed's Python IPFSClient, run against the embedded daemon.

The class below is copied verbatim from the seed (r3mes-data-management.md,
"IPFS Integration Architecture", "IPFS Client Implementation"). The harness
after it uploads a deterministic gradient dictionary with `add_gradients`,
prints the CID the daemon answered, and writes the exact bytes that were
uploaded (gzip stamps the time, so the test must hash these very bytes).

Usage: seed_ipfs_client.py <api port> <file for the uploaded bytes>
"""

import sys

import requests

class IPFSClient:
    def __init__(self, ipfs_host="localhost", ipfs_port=5001):
        self.ipfs_host = ipfs_host
        self.ipfs_port = ipfs_port
        self.base_url = f"http://{ipfs_host}:{ipfs_port}/api/v0"
        
    def add_gradients(self, gradient_data):
        """Upload gradient data directly to IPFS (active role)"""
        # Serialize gradient data
        serialized_data = self.serialize_gradients(gradient_data)
        
        # Upload to IPFS
        files = {'file': ('gradient.bin', serialized_data, 'application/octet-stream')}
        response = requests.post(f"{self.base_url}/add", files=files)
        
        if response.status_code == 200:
            result = response.json()
            ipfs_hash = result['Hash']  # CID (Content Identifier)
            return ipfs_hash
        else:
            raise Exception(f"IPFS upload failed: {response.text}")
    
    def serialize_gradients(self, gradient_data):
        """Serialize gradient data for IPFS storage"""
        import pickle
        import gzip
        
        # Compress gradient data
        serialized = pickle.dumps(gradient_data)
        compressed = gzip.compress(serialized)
        
        return compressed


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

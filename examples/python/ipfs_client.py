"""The seed's Python IPFSClient, copied verbatim.

From the specification (r3mes-data-management.md, "IPFS Integration
Architecture", "IPFS Client Implementation"); not one character of the class
is changed, so what runs against the r3mes daemon is exactly what the seed's
Python miner runs against Kubo.
"""

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

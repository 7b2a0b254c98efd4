"""What a client in Python needs to sign r3mes transactions.

Everything here follows the comments of proto/r3mes/chain/v1/tx.proto and
the keeper's rustdoc:

- addresses: bech32 (not bech32m), prefix "remes", over
  ripemd160(sha256(compressed secp256k1 public key));
- sign bytes: "r3mes-tx-v1" 0x00 chain_id 0x00 be64(sequence)
  be64(timestamp_ms) pubkey(33) body_bytes;
- signature: deterministic ECDSA (RFC 6979) over SHA-256(sign bytes),
  r || s, low-S;
- proof of work: sha256("r3mes-pow-v1" || miner(20) || CID bytes ||
  be64(round) || be64(nonce)) starts with `pow_difficulty_bits` zero bits.

Only the standard library and `ecdsa` are used.
"""

import base64
import hashlib
import struct

import ecdsa
import ecdsa.util

ADDRESS_PREFIX = "remes"
SIGN_DOMAIN = b"r3mes-tx-v1"
POW_DOMAIN = b"r3mes-pow-v1"


# -- keys and addresses ------------------------------------------------------


class Key:
    """A secp256k1 secret key and the address it signs for."""

    def __init__(self, secret_hex):
        secret = bytes.fromhex(secret_hex.strip())
        if len(secret) != 32:
            raise ValueError(f"a secret key is 32 bytes (64 hex digits), got {len(secret)} bytes")
        self.signing_key = ecdsa.SigningKey.from_string(secret, curve=ecdsa.SECP256k1)
        self.public_key = self.signing_key.get_verifying_key().to_string("compressed")
        self.account_id = ripemd160(hashlib.sha256(self.public_key).digest())
        self.address = bech32_encode(ADDRESS_PREFIX, self.account_id)

    def sign(self, message):
        """64 bytes r || s over SHA-256(message), deterministic, low-S."""
        r, s = self.signing_key.sign_deterministic(
            message,
            hashfunc=hashlib.sha256,
            sigencode=ecdsa.util.sigencode_strings_canonize,
        )
        return r + s


def sign_bytes(chain_id, sequence, timestamp_ms, public_key, body_bytes):
    """The bytes a transaction's signature covers (see tx.proto)."""
    chain = chain_id.encode("utf-8")
    if b"\0" in chain:
        raise ValueError("a chain id must not contain NUL")
    return (
        SIGN_DOMAIN
        + b"\0"
        + chain
        + b"\0"
        + struct.pack(">Q", sequence)
        + struct.pack(">q", timestamp_ms)
        + public_key
        + body_bytes
    )


# -- proof of work -----------------------------------------------------------


def pow_digest(account_id, cid_bytes, round_id, nonce):
    return hashlib.sha256(
        POW_DOMAIN + account_id + cid_bytes + struct.pack(">QQ", round_id, nonce)
    ).digest()


def leading_zero_bits(digest):
    bits = 0
    for byte in digest:
        if byte:
            return bits + 8 - byte.bit_length()
        bits += 8
    return bits


def solve_pow(account_id, cid_bytes, round_id, difficulty_bits):
    """The first nonce whose digest has `difficulty_bits` leading zero bits."""
    nonce = 0
    while leading_zero_bits(pow_digest(account_id, cid_bytes, round_id, nonce)) < difficulty_bits:
        nonce += 1
    return nonce


# -- CIDs --------------------------------------------------------------------

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def cid_bytes(text):
    """The binary form of a CID: CIDv0 (base58btc "Qm...") is its multihash,
    CIDv1 in base32 ("b...") the decoded bytes."""
    if text.startswith("Qm") and len(text) == 46:
        number = 0
        for char in text:
            index = _B58.find(char)
            if index < 0:
                raise ValueError(f"{text!r}: {char!r} is not base58")
            number = number * 58 + index
        raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
        if len(raw) != 34 or raw[:2] != b"\x12\x20":
            raise ValueError(f"{text!r} is not a sha2-256 CIDv0")
        return raw
    if text.startswith("b"):
        body = text[1:].upper()
        return base64.b32decode(body + "=" * (-len(body) % 8))
    raise ValueError(f"{text!r}: only CIDv0 and base32 CIDv1 are understood here")


# -- bech32 (BIP-173) --------------------------------------------------------

_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _polymod(values):
    generator = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = ((checksum & 0x1FFFFFF) << 5) ^ value
        for i, g in enumerate(generator):
            if (top >> i) & 1:
                checksum ^= g
    return checksum


def _to_five_bits(data):
    accumulator, bits, out = 0, 0, []
    for byte in data:
        accumulator = (accumulator << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            out.append((accumulator >> bits) & 31)
    if bits:
        out.append((accumulator << (5 - bits)) & 31)
    return out


def bech32_encode(prefix, data):
    expanded = [ord(c) >> 5 for c in prefix] + [0] + [ord(c) & 31 for c in prefix]
    words = _to_five_bits(data)
    mod = _polymod(expanded + words + [0] * 6) ^ 1
    checksum = [(mod >> 5 * (5 - i)) & 31 for i in range(6)]
    return prefix + "1" + "".join(_BECH32[w] for w in words + checksum)


# -- RIPEMD-160 --------------------------------------------------------------
# hashlib has it only when the OpenSSL it was built with still offers it
# (OpenSSL 3 moved it to the legacy provider), so a plain implementation
# stands in when it is missing.

_R_LEFT = (
    tuple(range(16)),
    (7, 4, 13, 1, 10, 6, 15, 3, 12, 0, 9, 5, 2, 14, 11, 8),
    (3, 10, 14, 4, 9, 15, 8, 1, 2, 7, 0, 6, 13, 11, 5, 12),
    (1, 9, 11, 10, 0, 8, 12, 4, 13, 3, 7, 15, 14, 5, 6, 2),
    (4, 0, 5, 9, 7, 12, 2, 10, 14, 1, 3, 8, 11, 6, 15, 13),
)
_R_RIGHT = (
    (5, 14, 7, 0, 9, 2, 11, 4, 13, 6, 15, 8, 1, 10, 3, 12),
    (6, 11, 3, 7, 0, 13, 5, 10, 14, 15, 8, 12, 4, 9, 1, 2),
    (15, 5, 1, 3, 7, 14, 6, 9, 11, 8, 12, 2, 10, 0, 4, 13),
    (8, 6, 4, 1, 3, 11, 15, 0, 5, 12, 2, 13, 9, 7, 10, 14),
    (12, 15, 10, 4, 1, 5, 8, 7, 6, 2, 13, 14, 0, 3, 9, 11),
)
_S_LEFT = (
    (11, 14, 15, 12, 5, 8, 7, 9, 11, 13, 14, 15, 6, 7, 9, 8),
    (7, 6, 8, 13, 11, 9, 7, 15, 7, 12, 15, 9, 11, 7, 13, 12),
    (11, 13, 6, 7, 14, 9, 13, 15, 14, 8, 13, 6, 5, 12, 7, 5),
    (11, 12, 14, 15, 14, 15, 9, 8, 9, 14, 5, 6, 8, 6, 5, 12),
    (9, 15, 5, 11, 6, 8, 13, 12, 5, 12, 13, 14, 11, 8, 5, 6),
)
_S_RIGHT = (
    (8, 9, 9, 11, 13, 15, 15, 5, 7, 7, 8, 11, 14, 14, 12, 6),
    (9, 13, 15, 7, 12, 8, 9, 11, 7, 7, 12, 7, 6, 15, 13, 11),
    (9, 7, 15, 11, 8, 6, 6, 14, 12, 13, 5, 14, 13, 13, 7, 5),
    (15, 5, 8, 11, 14, 14, 6, 14, 6, 9, 12, 9, 12, 5, 15, 8),
    (8, 5, 12, 9, 12, 5, 14, 6, 8, 13, 6, 5, 15, 13, 11, 11),
)
_K_LEFT = (0x00000000, 0x5A827999, 0x6ED9EBA1, 0x8F1BBCDC, 0xA953FD4E)
_K_RIGHT = (0x50A28BE6, 0x5C4DD124, 0x6D703EF3, 0x7A6D76E9, 0x00000000)
_MASK = 0xFFFFFFFF


def _f(round_index, x, y, z):
    if round_index == 0:
        return x ^ y ^ z
    if round_index == 1:
        return (x & y) | (~x & z)
    if round_index == 2:
        return (x | ~y) ^ z
    if round_index == 3:
        return (x & z) | (y & ~z)
    return x ^ (y | ~z)


def _rotate(x, n):
    return ((x << n) | (x >> (32 - n))) & _MASK


def _ripemd160_plain(data):
    h = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0]
    padded = data + b"\x80" + b"\0" * ((55 - len(data)) % 64) + struct.pack("<Q", 8 * len(data))
    for offset in range(0, len(padded), 64):
        x = struct.unpack("<16I", padded[offset : offset + 64])
        al, bl, cl, dl, el = h
        ar, br, cr, dr, er = h
        for j in range(5):
            for i in range(16):
                t = (al + (_f(j, bl, cl, dl) & _MASK) + x[_R_LEFT[j][i]] + _K_LEFT[j]) & _MASK
                t = (_rotate(t, _S_LEFT[j][i]) + el) & _MASK
                al, el, dl, cl, bl = el, dl, _rotate(cl, 10), bl, t
                t = (ar + (_f(4 - j, br, cr, dr) & _MASK) + x[_R_RIGHT[j][i]] + _K_RIGHT[j]) & _MASK
                t = (_rotate(t, _S_RIGHT[j][i]) + er) & _MASK
                ar, er, dr, cr, br = er, dr, _rotate(cr, 10), br, t
        h = [
            (h[1] + cl + dr) & _MASK,
            (h[2] + dl + er) & _MASK,
            (h[3] + el + ar) & _MASK,
            (h[4] + al + br) & _MASK,
            (h[0] + bl + cr) & _MASK,
        ]
    return struct.pack("<5I", *h)


def ripemd160(data):
    try:
        return hashlib.new("ripemd160", data).digest()
    except ValueError:
        return _ripemd160_plain(data)

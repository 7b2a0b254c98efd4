//! dag-pb: the protobuf node format of UnixFS DAGs (`PBNode { Links, Data }`).
//!
//! Encoding is canonical as the dag-pb spec and Kubo write it: links first
//! (field 2, each `PBLink { Hash = 1, Name = 2, Tsize = 3 }`), then data
//! (field 1). Decoding is strict in the same way, so a node has exactly one
//! encoding and a proof built from decoded nodes re-hashes to the same CID.

use cid::Cid;

use crate::wire::{self, Reader, Value};

/// A link from one dag-pb node to a child block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbLink {
    /// CID of the child.
    pub cid: Cid,
    /// Link name (Kubo writes `""` for file chunks; directory entries carry names).
    pub name: Option<String>,
    /// Cumulative size of the child's DAG in bytes.
    pub tsize: Option<u64>,
}

/// A decoded dag-pb node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PbNode {
    /// Links in order.
    pub links: Vec<PbLink>,
    /// Opaque data (a UnixFS message for UnixFS nodes).
    pub data: Option<Vec<u8>>,
}

impl PbNode {
    /// Canonical dag-pb bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(self.data.as_ref().map_or(0, Vec::len) + 48 * self.links.len() + 8);
        let mut link_buf = Vec::with_capacity(48);
        for link in &self.links {
            link_buf.clear();
            wire::put_bytes(&mut link_buf, 1, &link.cid.to_bytes());
            if let Some(name) = &link.name {
                wire::put_bytes(&mut link_buf, 2, name.as_bytes());
            }
            if let Some(tsize) = link.tsize {
                wire::put_uint(&mut link_buf, 3, tsize);
            }
            wire::put_bytes(&mut out, 2, &link_buf);
        }
        if let Some(data) = &self.data {
            wire::put_bytes(&mut out, 1, data);
        }
        out
    }

    /// Decodes canonical dag-pb bytes; anything else is an error saying why.
    pub fn decode(bytes: &[u8]) -> Result<PbNode, String> {
        let mut node = PbNode::default();
        let mut reader = Reader::new(bytes);
        while !reader.is_empty() {
            match reader.field()? {
                (2, Value::Bytes(link)) => {
                    if node.data.is_some() {
                        return Err("link after data: links must come first".into());
                    }
                    node.links.push(decode_link(link)?);
                }
                (1, Value::Bytes(data)) => {
                    if node.data.is_some() {
                        return Err("data field appears twice".into());
                    }
                    node.data = Some(data.to_vec());
                }
                (field, _) => return Err(format!("unexpected field {field} in PBNode")),
            }
        }
        Ok(node)
    }
}

fn decode_link(bytes: &[u8]) -> Result<PbLink, String> {
    let mut reader = Reader::new(bytes);
    let mut cid = None;
    let mut name = None;
    let mut tsize = None;
    let mut last_field = 0;
    while !reader.is_empty() {
        let (field, value) = reader.field()?;
        if field <= last_field {
            return Err(format!("PBLink field {field} out of order or repeated"));
        }
        last_field = field;
        match (field, value) {
            (1, Value::Bytes(b)) => {
                cid = Some(
                    crate::cids::decode_exact(b)
                        .map_err(|e| format!("link hash is not a CID: {e}"))?,
                )
            }
            (2, Value::Bytes(b)) => {
                name = Some(String::from_utf8(b.to_vec()).map_err(|_| "link name is not UTF-8")?)
            }
            (3, Value::Varint(v)) => tsize = Some(v),
            (field, _) => return Err(format!("unexpected field {field} in PBLink")),
        }
    }
    let cid = cid.ok_or("link without hash")?;
    Ok(PbLink { cid, name, tsize })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cids;
    use proptest::prelude::*;

    fn link(n: u8, name: Option<&str>, tsize: Option<u64>) -> PbLink {
        PbLink {
            cid: cids::dag_pb_cid(0, cids::sha256_multihash(&[n])),
            name: name.map(String::from),
            tsize,
        }
    }

    #[test]
    fn round_trips_and_orders_links_first() {
        let node = PbNode {
            links: vec![link(1, Some(""), Some(10)), link(2, None, None)],
            data: Some(vec![8, 2]),
        };
        let bytes = node.encode();
        assert_eq!(bytes[0], 0x12, "links are field 2 and come first");
        assert_eq!(PbNode::decode(&bytes).unwrap(), node);
    }

    #[test]
    fn rejects_non_canonical() {
        // data before link
        let mut bytes = Vec::new();
        wire::put_bytes(&mut bytes, 1, &[8, 2]);
        let l = PbNode {
            links: vec![link(1, None, None)],
            data: None,
        }
        .encode();
        bytes.extend_from_slice(&l);
        assert!(
            PbNode::decode(&bytes)
                .unwrap_err()
                .contains("links must come first")
        );
        // unknown field
        assert!(PbNode::decode(&[0x18, 0x01]).is_err());
        // a link hash with trailing bytes after the CID (found by fuzzing)
        let trailing = [18, 9, 10, 7, 1, 0, 0, 1, 255, 255, 0];
        assert!(PbNode::decode(&trailing).unwrap_err().contains("trailing"));
        // link without hash
        assert!(
            PbNode::decode(&[0x12, 0x02, 0x18, 0x01])
                .unwrap_err()
                .contains("without hash")
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = PbNode::decode(&bytes);
        }

        #[test]
        fn encode_decode_round_trip(
            data in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
            links in proptest::collection::vec((any::<u8>(), proptest::option::of("[a-z]{0,8}"), proptest::option::of(any::<u64>())), 0..6),
        ) {
            let node = PbNode {
                links: links.into_iter().map(|(n, name, tsize)| link(n, name.as_deref(), tsize)).collect(),
                data,
            };
            prop_assert_eq!(PbNode::decode(&node.encode()).unwrap(), node);
        }
    }
}

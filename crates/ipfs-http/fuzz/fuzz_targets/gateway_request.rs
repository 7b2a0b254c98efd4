//! What a gateway client controls: the query string, the Accept header and the
//! Range header. None of them may panic the parsers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use r3mes_ipfs_http::gateway::negotiate::{http_range, negotiate};
use r3mes_ipfs_http::query::QueryPairs;

fuzz_target!(|input: (&str, &str, &str, u64)| {
    let (query, accept, range, size) = input;
    let pairs = QueryPairs::parse(Some(query));
    let _ = negotiate(&pairs, Some(accept));
    let _ = negotiate(&pairs, None);
    let _ = http_range(Some(range), size);
});

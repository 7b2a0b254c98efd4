//! Daemon addresses (URLs, host:port, multiaddrs from `$IPFS_PATH/api`) never
//! panic the parser, and what parses is an http URL.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(url) = r3mes_kubo::addr::api_base_url(text) {
        assert!(url.starts_with("http://") || url.starts_with("https://"), "{url}");
    }
});

//! What a gateway request asks for: the response format (from `?format=` or
//! `Accept`), CAR parameters (`dag-scope`, `entity-bytes`, `car-version`,
//! `car-order`, `car-dups`), and HTTP `Range`. Pure parsing, no I/O.

use axum::http::StatusCode;

use crate::query::QueryPairs;

/// Media type of a raw block.
pub const RAW_TYPE: &str = "application/vnd.ipld.raw";
/// Media type of a CAR stream.
pub const CAR_TYPE: &str = "application/vnd.ipld.car";
/// The one CAR variant served: version 1, depth-first, each block once.
pub const CAR_CONTENT_TYPE: &str = "application/vnd.ipld.car; version=1; order=dfs; dups=n";

/// A request the gateway refuses, with the status and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 400, 406, 416 or 501.
    pub status: StatusCode,
    /// Why, for the response body.
    pub message: String,
}

impl Refusal {
    /// A refusal with any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400 Bad Request.
    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

/// Which blocks of the DAG a CAR carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DagScope {
    /// The root block only.
    Block,
    /// What it takes to read the entity: a whole UnixFS file, or the root of anything else.
    Entity,
    /// The whole DAG.
    All,
}

impl DagScope {
    fn parse(text: &str) -> Result<Self, Refusal> {
        match text {
            "block" => Ok(Self::Block),
            "entity" => Ok(Self::Entity),
            "all" => Ok(Self::All),
            other => Err(Refusal::bad(format!(
                "invalid dag-scope {other:?}: expected block, entity or all"
            ))),
        }
    }

    /// The query spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::Entity => "entity",
            Self::All => "all",
        }
    }
}

/// The upper bound of `entity-bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteBound {
    /// A byte offset, inclusive; negative counts from the end (`-1` is the last byte).
    At(i64),
    /// `*`: the end of the entity.
    End,
}

/// `entity-bytes=from:to`: a byte range of the entity, both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntityBytes {
    /// First byte; negative counts from the end.
    pub from: i64,
    /// Last byte.
    pub to: ByteBound,
}

/// `entity-bytes` resolved against the entity's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// Bytes `[start, end)`.
    Range(u64, u64),
    /// A range of no bytes: answered as `dag-scope=block`.
    Empty,
    /// Starts past the end: refused with 400.
    Outside,
}

impl EntityBytes {
    /// Parses `from:to` (`to` may be `*`; both may be negative).
    pub fn parse(text: &str) -> Result<Self, Refusal> {
        let invalid = |why: &str| {
            Refusal::bad(format!(
                "invalid entity-bytes {text:?}: {why} (expected from:to, such as 0:1023, -1024:* or 499:-1000)"
            ))
        };
        let (from, to) = text.split_once(':').ok_or_else(|| invalid("no ':'"))?;
        let from: i64 = from
            .trim()
            .parse()
            .map_err(|_| invalid("'from' is not an integer"))?;
        let to = match to.trim() {
            "*" => ByteBound::End,
            n => ByteBound::At(
                n.parse()
                    .map_err(|_| invalid("'to' is not an integer or *"))?,
            ),
        };
        if let ByteBound::At(to) = to
            && from >= 0
            && to >= 0
            && to < from
        {
            return Err(invalid("'to' is before 'from'"));
        }
        Ok(Self { from, to })
    }

    /// The range within an entity of `size` bytes.
    pub fn resolve(&self, size: u64) -> Resolved {
        if size == 0 {
            return Resolved::Empty;
        }
        let start = if self.from < 0 {
            size.saturating_sub(self.from.unsigned_abs())
        } else {
            self.from.unsigned_abs()
        };
        if start >= size {
            return Resolved::Outside;
        }
        let last = match self.to {
            ByteBound::End => size - 1,
            ByteBound::At(to) if to >= 0 => to.unsigned_abs().min(size - 1),
            ByteBound::At(to) => match size.checked_sub(to.unsigned_abs()) {
                Some(last) => last,
                None => return Resolved::Empty,
            },
        };
        if last < start {
            Resolved::Empty
        } else {
            Resolved::Range(start, last + 1)
        }
    }
}

/// What a CAR request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarRequest {
    /// Which blocks.
    pub scope: DagScope,
    /// The byte range of the entity, when asked (implies [`DagScope::Entity`]).
    pub bytes: Option<EntityBytes>,
    /// The `entity-bytes` text as given, for the Etag.
    bytes_text: Option<String>,
}

impl CarRequest {
    /// The Etag of this CAR: the CID, `.car.`, and a hash of the parameters
    /// that shape the stream (the stream itself is deterministic).
    pub fn etag(&self, cid: &str) -> String {
        let params = format!(
            "scope={};bytes={};version=1;order=dfs;dups=n",
            self.scope.as_str(),
            self.bytes_text.as_deref().unwrap_or("")
        );
        let hash = r3mes_ipfs::cids::sha256_multihash(params.as_bytes());
        let short: String = hash
            .digest()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("\"{cid}.car.{short}\"")
    }
}

/// The response the request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// The root block as is.
    Raw,
    /// A CAR stream.
    Car(CarRequest),
    /// The file's bytes (deserialized UnixFS).
    File,
}

/// The format, and whether it was negotiated with `Accept` rather than named
/// by `?format=` (then the answer carries a `Content-Location` naming it).
pub fn negotiate(query: &QueryPairs, accept: Option<&str>) -> Result<(Format, bool), Refusal> {
    let (kind, car_params, from_accept) = match query.first(&["format"]) {
        Some("raw") => (Kind::Raw, CarParams::default(), false),
        Some("car") => (Kind::Car, first_car_params(accept), false),
        Some(f @ ("tar" | "dag-json" | "dag-cbor" | "json" | "cbor" | "ipns-record")) => {
            return Err(Refusal::new(
                StatusCode::NOT_ACCEPTABLE,
                format!("format={f} is not served here: use format=raw or format=car"),
            ));
        }
        Some(other) => {
            return Err(Refusal::bad(format!(
                "unknown format {other:?}: use raw or car"
            )));
        }
        None => {
            let (kind, params) = from_accept_header(accept)?;
            (kind, params, kind != Kind::File)
        }
    };
    let format = match kind {
        Kind::Raw => Format::Raw,
        Kind::File => Format::File,
        Kind::Car => Format::Car(car_request(query, car_params)?),
    };
    Ok((format, from_accept))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Raw,
    Car,
    File,
}

/// CAR content-type parameters from `Accept`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct CarParams {
    version: Option<String>,
    order: Option<String>,
    dups: Option<String>,
}

impl CarParams {
    fn from_media(params: &[(String, String)]) -> Self {
        let get = |key: &str| {
            params
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        Self {
            version: get("version"),
            order: get("order"),
            dups: get("dups"),
        }
    }

    /// Why this variant cannot be served, if it cannot.
    fn unsupported(&self) -> Option<String> {
        if let Some(v) = self.version.as_deref().filter(|v| *v != "1") {
            return Some(format!("CAR version {v} (only version 1 is served)"));
        }
        if let Some(o) = self
            .order
            .as_deref()
            .filter(|o| !matches!(*o, "dfs" | "unk"))
        {
            return Some(format!("CAR order {o} (only dfs is served)"));
        }
        if let Some(d) = self.dups.as_deref().filter(|d| *d != "n") {
            return Some(format!("CAR dups={d} (only dups=n is served)"));
        }
        None
    }
}

/// One entry of an `Accept` header.
struct MediaRange {
    essence: String,
    params: Vec<(String, String)>,
    q: f32,
}

fn parse_accept(accept: &str) -> Vec<MediaRange> {
    let mut ranges: Vec<MediaRange> = accept
        .split(',')
        .filter_map(|item| {
            let mut parts = item.split(';').map(str::trim);
            let essence = parts.next().filter(|e| !e.is_empty())?.to_ascii_lowercase();
            let mut params = Vec::new();
            let mut q = 1.0f32;
            for p in parts {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                let k = k.trim().to_ascii_lowercase();
                let v = v.trim().trim_matches('"').to_string();
                if k == "q" {
                    q = v.parse().unwrap_or(0.0);
                } else {
                    params.push((k, v));
                }
            }
            Some(MediaRange { essence, params, q })
        })
        .filter(|m| m.q > 0.0)
        .collect();
    ranges.sort_by(|a, b| b.q.total_cmp(&a.q));
    ranges
}

fn first_car_params(accept: Option<&str>) -> CarParams {
    accept
        .map(parse_accept)
        .unwrap_or_default()
        .into_iter()
        .find(|m| m.essence == CAR_TYPE)
        .map(|m| CarParams::from_media(&m.params))
        .unwrap_or_default()
}

fn from_accept_header(accept: Option<&str>) -> Result<(Kind, CarParams), Refusal> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok((Kind::File, CarParams::default()));
    };
    let mut refused = Vec::new();
    for media in parse_accept(accept) {
        match media.essence.as_str() {
            RAW_TYPE => return Ok((Kind::Raw, CarParams::default())),
            CAR_TYPE => {
                let params = CarParams::from_media(&media.params);
                match params.unsupported() {
                    None => return Ok((Kind::Car, params)),
                    Some(why) => refused.push(why),
                }
            }
            "application/vnd.ipld.dag-json"
            | "application/vnd.ipld.dag-cbor"
            | "application/json"
            | "application/cbor"
            | "application/x-tar"
            | "application/vnd.ipfs.ipns-record" => refused.push(media.essence.clone()),
            _ => return Ok((Kind::File, CarParams::default())),
        }
    }
    Err(Refusal::new(
        StatusCode::NOT_ACCEPTABLE,
        format!(
            "cannot serve any type the request accepts ({}): this gateway serves {RAW_TYPE}, \
             {CAR_CONTENT_TYPE}, and file bytes",
            if refused.is_empty() {
                accept.to_string()
            } else {
                refused.join(", ")
            }
        ),
    ))
}

fn car_request(query: &QueryPairs, accept: CarParams) -> Result<CarRequest, Refusal> {
    let params = CarParams {
        version: query
            .first(&["car-version"])
            .map(str::to_string)
            .or(accept.version),
        order: query
            .first(&["car-order"])
            .map(str::to_string)
            .or(accept.order),
        dups: query
            .first(&["car-dups"])
            .map(str::to_string)
            .or(accept.dups),
    };
    if let Some(why) = params.unsupported() {
        return Err(Refusal::bad(format!("cannot serve {why}")));
    }
    let bytes_text = query.first(&["entity-bytes"]).map(str::to_string);
    let bytes = bytes_text.as_deref().map(EntityBytes::parse).transpose()?;
    let scope = match (
        query
            .first(&["dag-scope"])
            .map(DagScope::parse)
            .transpose()?,
        bytes,
    ) {
        (Some(scope), Some(_)) if scope != DagScope::Entity => {
            return Err(Refusal::bad(format!(
                "entity-bytes implies dag-scope=entity, not dag-scope={}",
                scope.as_str()
            )));
        }
        (_, Some(_)) => DagScope::Entity,
        (Some(scope), None) => scope,
        (None, None) => DagScope::All,
    };
    Ok(CarRequest {
        scope,
        bytes,
        bytes_text,
    })
}

/// An HTTP `Range` of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpRange {
    /// No usable `Range`: the whole file.
    Whole,
    /// Bytes `[start, end)`.
    Part(u64, u64),
    /// Cannot be satisfied: 416.
    Unsatisfiable,
}

/// Reads a single `bytes=` range against a file of `size` bytes. Malformed and
/// multi-range headers are ignored (the whole file is sent), as HTTP allows.
pub fn http_range(header: Option<&str>, size: u64) -> HttpRange {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return HttpRange::Whole;
    };
    if spec.contains(',') {
        return HttpRange::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return HttpRange::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        return match last.parse::<u64>() {
            Ok(0) => HttpRange::Unsatisfiable,
            Ok(_) if size == 0 => HttpRange::Unsatisfiable,
            Ok(n) => HttpRange::Part(size.saturating_sub(n), size),
            Err(_) => HttpRange::Whole,
        };
    }
    let Ok(start) = first.parse::<u64>() else {
        return HttpRange::Whole;
    };
    let end = match last {
        "" => size,
        n => match n.parse::<u64>() {
            Ok(n) if n >= start => n.saturating_add(1).min(size),
            _ => return HttpRange::Whole,
        },
    };
    if start >= size {
        HttpRange::Unsatisfiable
    } else {
        HttpRange::Part(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> QueryPairs {
        QueryPairs::parse(Some(text))
    }

    #[test]
    fn format_query_wins_over_accept() {
        let (f, negotiated) = negotiate(&q("format=raw"), Some(CAR_TYPE)).unwrap();
        assert_eq!((f, negotiated), (Format::Raw, false));
        let (f, negotiated) = negotiate(&q(""), Some(RAW_TYPE)).unwrap();
        assert_eq!((f, negotiated), (Format::Raw, true));
        let (f, _) = negotiate(&q(""), None).unwrap();
        assert_eq!(f, Format::File);
        let (f, _) = negotiate(&q(""), Some("text/html,*/*;q=0.8")).unwrap();
        assert_eq!(f, Format::File);
        assert_eq!(
            negotiate(&q("format=tar"), None).unwrap_err().status,
            StatusCode::NOT_ACCEPTABLE
        );
        assert_eq!(
            negotiate(&q("format=zip"), None).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn car_variants() {
        let accept = "application/vnd.ipld.car; version=1; order=dfs; dups=n";
        let (f, negotiated) = negotiate(&q(""), Some(accept)).unwrap();
        assert!(negotiated);
        let Format::Car(car) = f else { panic!("{f:?}") };
        assert_eq!(car.scope, DagScope::All);

        // dups=y alone is not acceptable; with a fallback it is.
        let err = negotiate(&q(""), Some("application/vnd.ipld.car; dups=y")).unwrap_err();
        assert_eq!(err.status, StatusCode::NOT_ACCEPTABLE);
        assert!(err.message.contains("dups=y"), "{}", err.message);
        let fallback = "application/vnd.ipld.car;dups=y, application/vnd.ipld.car;q=0.5";
        assert!(matches!(
            negotiate(&q(""), Some(fallback)).unwrap().0,
            Format::Car(_)
        ));
        assert!(negotiate(&q("format=car&car-version=2"), None).is_err());
        assert!(negotiate(&q("format=car&car-order=unk"), None).is_ok());
        assert!(negotiate(&q("format=car&car-dups=y"), None).is_err());
        assert!(
            negotiate(
                &q("format=car"),
                Some("application/vnd.ipld.car; version=2")
            )
            .is_err()
        );
    }

    #[test]
    fn scopes_and_etags() {
        let car = |text: &str| match negotiate(&q(text), None).unwrap().0 {
            Format::Car(c) => c,
            other => panic!("{other:?}"),
        };
        assert_eq!(car("format=car&dag-scope=block").scope, DagScope::Block);
        assert_eq!(car("format=car&entity-bytes=0:9").scope, DagScope::Entity);
        assert!(negotiate(&q("format=car&dag-scope=all&entity-bytes=0:9"), None).is_err());
        assert!(negotiate(&q("format=car&dag-scope=some"), None).is_err());
        let a = car("format=car").etag("bafy");
        let b = car("format=car&dag-scope=block").etag("bafy");
        let c = car("format=car&entity-bytes=0:9").etag("bafy");
        assert!(a.starts_with("\"bafy.car.") && a.ends_with('"'), "{a}");
        assert!(a != b && b != c && a != c);
        assert_eq!(a, car("format=car&dag-scope=all&car-dups=n").etag("bafy"));
    }

    #[test]
    fn entity_bytes() {
        let r = |text: &str, size| EntityBytes::parse(text).unwrap().resolve(size);
        assert_eq!(r("0:*", 100), Resolved::Range(0, 100));
        assert_eq!(r("0:9", 100), Resolved::Range(0, 10));
        assert_eq!(r("90:200", 100), Resolved::Range(90, 100));
        assert_eq!(r("-10:*", 100), Resolved::Range(90, 100));
        assert_eq!(r("-1000:*", 100), Resolved::Range(0, 100));
        assert_eq!(r("10:-10", 100), Resolved::Range(10, 91));
        assert_eq!(r("50:-60", 100), Resolved::Empty);
        assert_eq!(r("0:-200", 100), Resolved::Empty);
        assert_eq!(r("100:*", 100), Resolved::Outside);
        assert_eq!(r("0:*", 0), Resolved::Empty);
        for bad in ["", "5", "a:b", "1:x", "9:3", "1.5:*"] {
            assert!(EntityBytes::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn http_ranges() {
        assert_eq!(http_range(None, 10), HttpRange::Whole);
        assert_eq!(http_range(Some("bytes=0-4"), 10), HttpRange::Part(0, 5));
        assert_eq!(http_range(Some("bytes=5-"), 10), HttpRange::Part(5, 10));
        assert_eq!(http_range(Some("bytes=-3"), 10), HttpRange::Part(7, 10));
        assert_eq!(http_range(Some("bytes=-30"), 10), HttpRange::Part(0, 10));
        assert_eq!(http_range(Some("bytes=8-100"), 10), HttpRange::Part(8, 10));
        assert_eq!(http_range(Some("bytes=10-"), 10), HttpRange::Unsatisfiable);
        assert_eq!(http_range(Some("bytes=-0"), 10), HttpRange::Unsatisfiable);
        assert_eq!(http_range(Some("bytes=0-1,3-4"), 10), HttpRange::Whole);
        assert_eq!(http_range(Some("bytes=4-2"), 10), HttpRange::Whole);
        assert_eq!(http_range(Some("items=0-1"), 10), HttpRange::Whole);
    }
}

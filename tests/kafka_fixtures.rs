//! Kafka interoperability: batches written by a Kafka client (kafka-python's
//! `DefaultRecordBatchBuilder`, see `tests/fixtures/make_batches.py`) decode to exactly the
//! records it was given, and tidelog's encoder writes exactly the same bytes for those records.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tidelog::{Compression, Error, Header, OffsetRecord, Record, RecordBatch};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kafka_python")
}

/// The fixtures' names, from the `.json` files, sorted.
fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| p.file_stem().unwrap().to_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 10, "fixtures missing: {names:?}");
    names
}

struct Fixture {
    name: String,
    bytes: Bytes,
    base_offset: u64,
    compression: String,
    records: Vec<OffsetRecord>,
}

fn load(name: &str) -> Fixture {
    let dir = fixture_dir();
    let bytes = Bytes::from(std::fs::read(dir.join(format!("{name}.bin"))).unwrap());
    let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap();
    let json = Json::parse(&text);
    let records = json
        .get("records")
        .array()
        .iter()
        .map(|r| OffsetRecord {
            offset: r.get("offset").uint(),
            record: Record {
                key: r.get("key").hex(),
                value: r.get("value").hex(),
                timestamp: r.get("timestamp").int(),
                headers: r
                    .get("headers")
                    .array()
                    .iter()
                    .map(|h| Header {
                        key: String::from_utf8(h.get("key").hex().unwrap().to_vec()).unwrap(),
                        value: h.get("value").hex(),
                    })
                    .collect(),
            },
        })
        .collect();
    assert_eq!(json.get("size").uint(), bytes.len() as u64, "{name}");
    Fixture {
        name: name.to_owned(),
        bytes,
        base_offset: json.get("base_offset").uint(),
        compression: json.get("compression").str().to_owned(),
        records,
    }
}

#[test]
fn kafka_python_batches_decode_to_their_records() {
    for name in fixture_names() {
        let f = load(&name);
        let batch = RecordBatch::from_bytes(f.bytes.clone()).unwrap();
        let (first, used) = RecordBatch::decode_first(&f.bytes).unwrap();
        assert_eq!((first, used), (batch.clone(), f.bytes.len()), "{name}");
        let h = batch.header();
        assert_eq!(h.base_offset, f.base_offset, "{name}");
        assert_eq!(h.record_count as usize, f.records.len(), "{name}");
        assert_eq!(h.last_offset(), f.records.last().unwrap().offset, "{name}");
        assert_eq!(h.partition_leader_epoch, -1, "{name}");
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (-1, -1, -1),
            "{name}"
        );
        match f.compression.as_str() {
            "none" => {
                assert_eq!(h.compression().unwrap(), Compression::None, "{name}");
                let decoded: Vec<OffsetRecord> = batch.records().collect::<Result<_, _>>().unwrap();
                assert_eq!(decoded, f.records, "{name}");
            }
            "gzip" => {
                assert_eq!(h.compression().unwrap(), Compression::Gzip, "{name}");
                let mut records = batch.records();
                assert!(
                    matches!(
                        records.next(),
                        Some(Err(Error::UnsupportedCompression("gzip")))
                    ),
                    "{name}"
                );
                assert!(records.next().is_none(), "{name}");
            }
            other => panic!("{name}: unexpected compression {other}"),
        }
    }
}

#[test]
fn tidelog_encodes_the_same_bytes_as_kafka_python() {
    let mut compared = 0;
    for name in fixture_names() {
        let f = load(&name);
        if f.compression != "none" {
            continue; // tidelog writes uncompressed batches only
        }
        let records: Vec<Record> = f.records.iter().map(|r| r.record.clone()).collect();
        let ours = RecordBatch::encode(f.base_offset, &records).unwrap();
        assert!(
            ours.as_bytes() == &f.bytes,
            "{name}: encoding differs from kafka-python's"
        );

        // The same through the appending hook, after unrelated bytes.
        let mut out = b"prefix".to_vec();
        tidelog::__private::encode_into(&mut out, f.base_offset, &records).unwrap();
        assert!(out[6..] == f.bytes[..], "{name}: encode_into differs");
        write_for_python_check(&f, ours.as_bytes());
        compared += 1;
    }
    assert!(compared >= 9);
}

/// With `TIDELOG_PY_CHECK=<dir>`, writes tidelog's encoding of each fixture to `<dir>` for
/// `tests/fixtures/check_ours.py`, which decodes it with kafka-python.
fn write_for_python_check(f: &Fixture, ours: &Bytes) {
    if let Some(dir) = std::env::var_os("TIDELOG_PY_CHECK") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{}.bin", f.name)), ours).unwrap();
    }
}

/// Just enough JSON for the fixtures: objects, arrays, integers, null, strings without escapes.
#[derive(Debug)]
enum Json {
    Null,
    Int(i64),
    Str(String),
    Array(Vec<Json>),
    Object(BTreeMap<String, Json>),
}

impl Json {
    fn parse(text: &str) -> Json {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value();
        p.ws();
        assert_eq!(p.i, p.s.len(), "trailing JSON");
        v
    }

    fn get(&self, key: &str) -> &Json {
        match self {
            Json::Object(m) => m.get(key).unwrap_or_else(|| panic!("no field {key}")),
            other => panic!("not an object: {other:?}"),
        }
    }

    fn array(&self) -> &[Json] {
        match self {
            Json::Array(a) => a,
            other => panic!("not an array: {other:?}"),
        }
    }

    fn int(&self) -> i64 {
        match self {
            Json::Int(n) => *n,
            other => panic!("not an integer: {other:?}"),
        }
    }

    fn uint(&self) -> u64 {
        u64::try_from(self.int()).unwrap()
    }

    fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    /// A hex string as bytes, or `None` for null.
    fn hex(&self) -> Option<Bytes> {
        match self {
            Json::Null => None,
            Json::Str(s) => Some(
                (0..s.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                    .collect::<Vec<u8>>()
                    .into(),
            ),
            other => panic!("not hex or null: {other:?}"),
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Json {
        self.ws();
        match self.s[self.i] {
            b'n' => {
                assert_eq!(&self.s[self.i..self.i + 4], b"null");
                self.i += 4;
                Json::Null
            }
            b'"' => Json::Str(self.string()),
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                if !self.eat(b']') {
                    loop {
                        items.push(self.value());
                        if self.eat(b']') {
                            break;
                        }
                        assert!(self.eat(b','), "expected , at {}", self.i);
                    }
                }
                Json::Array(items)
            }
            b'{' => {
                self.i += 1;
                let mut map = BTreeMap::new();
                if !self.eat(b'}') {
                    loop {
                        self.ws();
                        let key = self.string();
                        assert!(self.eat(b':'), "expected : at {}", self.i);
                        map.insert(key, self.value());
                        if self.eat(b'}') {
                            break;
                        }
                        assert!(self.eat(b','), "expected , at {}", self.i);
                    }
                }
                Json::Object(map)
            }
            _ => {
                let start = self.i;
                while self.i < self.s.len()
                    && (self.s[self.i] == b'-' || self.s[self.i].is_ascii_digit())
                {
                    self.i += 1;
                }
                Json::Int(
                    std::str::from_utf8(&self.s[start..self.i])
                        .unwrap()
                        .parse()
                        .unwrap(),
                )
            }
        }
    }

    fn string(&mut self) -> String {
        assert_eq!(self.s[self.i], b'"');
        let start = self.i + 1;
        let len = self.s[start..].iter().position(|&c| c == b'"').unwrap();
        self.i = start + len + 1;
        let s = std::str::from_utf8(&self.s[start..start + len]).unwrap();
        assert!(!s.contains('\\'), "escapes are not supported: {s}");
        s.to_owned()
    }
}

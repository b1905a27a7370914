//! Typed records: produce and consume your own types through a codec; a record that does not
//! decode is reported on its own and the consumer goes on.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidelog::{
    BincodeCodec, Broker, BrokerConfig, BytesCodec, ConsumerConfig, Deserializer, Durability,
    Error, LogConfig, OffsetReset, Record, RecordField, Serializer, StringCodec, TypedConsumer,
    TypedRecord,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    customer: String,
    items: Vec<(String, u32)>,
    note: Option<String>,
}

fn order(id: u64) -> Order {
    Order {
        id,
        customer: format!("customer-{id}"),
        items: vec![
            ("tea".into(), 2),
            ("cake".into(), u32::try_from(id).unwrap()),
        ],
        note: id.is_multiple_of(2).then(|| "ring twice".into()),
    }
}

fn open() -> (tempfile::TempDir, Broker) {
    let dir = tempfile::tempdir().unwrap();
    let config =
        BrokerConfig::default().topic_defaults(LogConfig::default().durability(Durability::None));
    let broker = Broker::open_with(dir.path(), config).unwrap();
    broker.create_topic("orders", 1).unwrap();
    (dir, broker)
}

fn earliest() -> ConsumerConfig {
    ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest)
}

fn append(broker: &Broker, records: &[Record]) {
    broker
        .partition("orders", 0)
        .unwrap()
        .log()
        .unwrap()
        .append(records)
        .unwrap();
}

/// Polls until `n` results have come.
fn poll_n<K, V, KD: Deserializer<K>, VD: Deserializer<V>>(
    consumer: &mut TypedConsumer<K, V, KD, VD>,
    n: usize,
) -> Vec<Result<TypedRecord<K, V>, tidelog::DecodeError>> {
    let mut out = Vec::new();
    for _ in 0..100 {
        if out.len() >= n {
            break;
        }
        out.extend(consumer.poll(Duration::from_millis(100)).unwrap());
    }
    assert_eq!(out.len(), n);
    out
}

#[test]
fn bincode_round_trip_of_a_struct() {
    let (_dir, broker) = open();
    let codec = BincodeCodec;
    let records: Vec<Record> = (0..10)
        .map(|id| {
            Record::new(
                codec.encode(&format!("k{id}")).unwrap(),
                codec.encode(&order(id)).unwrap(),
            )
        })
        .collect();
    append(&broker, &records);
    append(&broker, &[Record::tombstone(codec.encode("k3").unwrap())]);

    let mut consumer: TypedConsumer<String, Order> =
        TypedConsumer::new(broker.consumer(earliest()).unwrap());
    consumer.subscribe(&["orders"]).unwrap();
    let got = poll_n(&mut consumer, 11);
    for (id, r) in got.iter().take(10).enumerate() {
        let r = r.as_ref().unwrap();
        assert_eq!(r.offset, id as u64);
        assert_eq!(r.key.as_deref(), Some(format!("k{id}").as_str()));
        assert_eq!(r.value, Some(order(id as u64)));
        assert_eq!(&*r.topic, "orders");
    }
    let tombstone = got[10].as_ref().unwrap();
    assert_eq!(
        (tombstone.key.as_deref(), tombstone.value.as_ref()),
        (Some("k3"), None)
    );
    let consumer = consumer.into_inner();
    assert!(consumer.assignment().len() == 1);
}

#[test]
fn a_garbage_record_is_reported_alone() {
    let (_dir, broker) = open();
    let codec = BincodeCodec;
    append(
        &broker,
        &[Record::from_value(codec.encode(&order(1)).unwrap())],
    );
    // A value that bincode cannot read as an Order, then a bad key, then a good record.
    append(
        &broker,
        &[Record::from_value(&b"\x05"[..]).with_header("source", "legacy")],
    );
    append(
        &broker,
        &[Record::new(
            &b"\xff\xff"[..],
            codec.encode(&order(2)).unwrap(),
        )],
    );
    append(
        &broker,
        &[Record::from_value(codec.encode(&order(3)).unwrap())],
    );

    let consumer = broker.consumer(earliest()).unwrap();
    let mut consumer: TypedConsumer<u64, Order> = TypedConsumer::new(consumer);
    consumer.subscribe(&["orders"]).unwrap();
    let got = poll_n(&mut consumer, 4);
    assert_eq!(got[0].as_ref().unwrap().value, Some(order(1)));
    assert_eq!(got[3].as_ref().unwrap().value, Some(order(3)));

    let bad_value = got[1].as_ref().unwrap_err();
    assert_eq!(bad_value.field, RecordField::Value);
    assert_eq!(bad_value.record.offset, 1);
    assert_eq!(
        bad_value.record.value.as_deref(),
        Some(&b"\x05"[..]),
        "the raw bytes stay available"
    );
    assert_eq!(bad_value.record.headers[0].key, "source");
    assert_eq!(bad_value.source.codec(), "bincode");
    assert!(bad_value.source.is_decode());
    let message = bad_value.to_string();
    assert!(
        message.contains("value") && message.contains("offset 1") && message.contains("orders-0"),
        "{message}"
    );

    let bad_key = got[2].as_ref().unwrap_err();
    assert_eq!(bad_key.field, RecordField::Key);
    assert_eq!(bad_key.record.offset, 2);

    // Nothing is left behind and nothing is read twice.
    assert!(consumer.poll(Duration::from_millis(10)).unwrap().is_empty());
}

#[test]
fn other_deserializers_and_decoding_raw_records() {
    let (_dir, broker) = open();
    let key = Serializer::<str>::encode(&StringCodec, "alice").unwrap();
    assert_eq!(&key[..], b"alice", "Kafka's StringSerializer bytes");
    append(
        &broker,
        &[
            Record::new(key, &b"raw payload"[..]),
            Record::new(&b"\xc3"[..], &b"x"[..]),
        ],
    );
    let consumer = broker.consumer(earliest()).unwrap();
    let mut consumer: TypedConsumer<String, Vec<u8>, _, _> =
        TypedConsumer::with_deserializers(consumer, StringCodec, BytesCodec);
    consumer.subscribe(&["orders"]).unwrap();
    let got = poll_n(&mut consumer, 2);
    let first = got[0].as_ref().unwrap();
    assert_eq!(
        (first.key.as_deref(), first.value.as_deref()),
        (Some("alice"), Some(&b"raw payload"[..]))
    );
    let err = got[1].as_ref().unwrap_err();
    assert_eq!(
        (err.field, err.source.codec()),
        (RecordField::Key, "string")
    );

    // The raw iterator plus `decode`.
    consumer.seek_to_beginning(&[]).unwrap();
    let raw: Vec<_> = consumer
        .iter(Duration::from_millis(20))
        .map(Result::unwrap)
        .collect();
    assert_eq!(raw.len(), 2);
    assert_eq!(
        consumer.decode(raw[0].clone()).unwrap().key.as_deref(),
        Some("alice")
    );
}

#[test]
fn codec_errors_convert_into_the_crate_error() {
    fn decode_order(bytes: &[u8]) -> tidelog::Result<Order> {
        Ok(BincodeCodec.decode(bytes)?)
    }
    let err = decode_order(b"").unwrap_err();
    assert!(matches!(&err, Error::Codec(e) if e.is_decode()), "{err}");
    assert!(err.to_string().contains("bincode"), "{err}");
}

#[cfg(feature = "json")]
#[test]
fn json_round_trip_and_a_bad_document() {
    use tidelog::JsonCodec;
    let (_dir, broker) = open();
    let json = JsonCodec;
    let text = json.encode(&order(4)).unwrap();
    assert!(std::str::from_utf8(&text)
        .unwrap()
        .contains("\"customer\":\"customer-4\""));
    append(
        &broker,
        &[
            Record::new(json.encode("a").unwrap(), text),
            Record::new(json.encode("b").unwrap(), &b"{\"id\": oops}"[..]),
            Record::new(json.encode("c").unwrap(), json.encode(&order(5)).unwrap()),
        ],
    );
    let consumer = broker.consumer(earliest()).unwrap();
    let mut consumer: TypedConsumer<String, Order, _, _> =
        TypedConsumer::with_deserializers(consumer, json, json);
    consumer.subscribe(&["orders"]).unwrap();
    let got = poll_n(&mut consumer, 3);
    assert_eq!(got[0].as_ref().unwrap().value, Some(order(4)));
    assert_eq!(got[1].as_ref().unwrap_err().source.codec(), "json");
    assert_eq!(got[2].as_ref().unwrap().key.as_deref(), Some("c"));
}

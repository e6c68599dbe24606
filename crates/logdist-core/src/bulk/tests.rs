use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::{Format, decode_packet};

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_796_553_000_000)
}

fn bulk(body: &str, index: Option<&str>) -> Result<Bulk, PacketError> {
    decode_bulk(
        Bytes::copy_from_slice(body.as_bytes()),
        index,
        &Schema::default(),
        now(),
    )
}

fn messages(bulk: &Bulk) -> Vec<Value> {
    std::str::from_utf8(&bulk.decoded.packet.ndjson)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn python_helpers_bulk() {
    // `helpers.bulk(es, [{"_index": "logs", "_id": 1, "message": ..., "@timestamp": ...}])`
    let body = concat!(
        "{\"index\":{\"_index\":\"logs\",\"_id\":1}}\n",
        "{\"message\":\"user logged in\",\"@timestamp\":\"2026-12-06T10:28:30.306Z\",\"level\":\"info\"}\n",
        "{\"index\":{\"_index\":\"logs\",\"_id\":\"2\"}}\n",
        "{\"message\":\"user logged out\",\"@timestamp\":\"2026-12-06T10:28:31.306Z\",\"level\":\"info\"}\n",
    );
    let b = bulk(body, None).unwrap();
    assert_eq!(b.decoded.packet.messages, 2);
    assert_eq!(b.decoded.rejected, []);
    assert_eq!(
        b.items[0],
        BulkItem {
            action: BulkAction::Index,
            index: Some("logs".into()),
            id: Some("1".into()),
            outcome: Outcome::Created,
        }
    );
    assert_eq!(messages(&b)[1]["timestamp"], 1_796_552_911_306_u64);
}

#[test]
fn filebeat_create_with_ecs_documents() {
    let body = concat!(
        "{\"create\":{\"_index\":\"filebeat-8.17.0\"}}\n",
        "{\"@timestamp\":\"2026-12-06T10:28:30.306Z\",\"log\":{\"offset\":1024,\"file\":{\"path\":\"/var/log/app.log\"}},",
        "\"message\":\"GET /health 200\",\"input\":{\"type\":\"filestream\"},\"ecs\":{\"version\":\"8.0.0\"},",
        "\"host\":{\"name\":\"web-1\"},\"agent\":{\"type\":\"filebeat\",\"version\":\"8.17.0\"}}\n",
    );
    let b = bulk(body, None).unwrap();
    assert_eq!(b.items[0].action, BulkAction::Create);
    let m = &messages(&b)[0];
    assert_eq!(m["message"], "GET /health 200");
    assert_eq!(m["source"], "web-1");
    assert_eq!(m["log"]["offset"], 1024);
    assert!(m.get("host").is_none(), "emptied by taking host.name");
}

#[test]
fn vector_and_fluent_bit_sinks() {
    // Vector's `elasticsearch` sink (bulk mode, action index) and Fluent Bit's `es`
    // output (`create`, `@timestamp`, the record under `log`), to `POST /{index}/_bulk`.
    let body = concat!(
        "{\"index\":{\"_index\":\"vector-2026.12.06\"}}\n",
        "{\"@timestamp\":\"2026-12-06T10:28:30.306Z\",\"host\":\"web-1\",\"message\":\"ready\",\"source_type\":\"file\"}\n",
        "{\"create\":{}}\r\n",
        "{\"@timestamp\":\"2026-12-06T10:28:30.306Z\",\"log\":\"started\"}\r\n",
    );
    let b = bulk(body, Some("from-path")).unwrap();
    assert_eq!(b.items[1].index.as_deref(), Some("from-path"));
    assert_eq!(b.decoded.packet.messages, 2);
    assert_eq!(messages(&b)[1]["message"], "started");
}

#[test]
fn delete_update_and_bad_documents_are_per_item() {
    let body = concat!(
        "{\"delete\":{\"_index\":\"logs\",\"_id\":\"7\"}}\n",
        "{\"update\":{\"_index\":\"logs\",\"_id\":\"8\"}}\n",
        "{\"doc\":{\"message\":\"x\"}}\n",
        "{\"index\":{\"_index\":\"logs\"}}\n",
        "{\"level\":\"info\"}\n",
        "{\"index\":{}}\n",
        "{\"message\":\"no index\"}\n",
        "{\"index\":{\"_index\":\"logs\"}}\n",
        "{\"timestamp\":1,\"severity\":\"INFO\",\"source\":\"s\",\"message\":\"as is\"}\n",
    );
    let b = bulk(body, None).unwrap();
    let outcomes: Vec<(u16, Option<&str>)> = b
        .items
        .iter()
        .map(|i| match &i.outcome {
            Outcome::Failed { kind, .. } => (i.outcome.status(), Some(*kind)),
            other => (other.status(), None),
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            (404, None),
            (404, Some("document_missing_exception")),
            (400, Some("document_parsing_exception")),
            (400, Some("action_request_validation_exception")),
            (201, None),
        ]
    );
    assert_eq!(b.decoded.packet.messages, 1);
    assert_eq!(
        &b.decoded.packet.ndjson[..],
        b"{\"timestamp\":1,\"severity\":\"INFO\",\"source\":\"s\",\"message\":\"as is\"}\n"
    );
    assert_eq!(b.decoded.rejected.len(), 1);
    assert_eq!(b.decoded.rejected[0].location, Location::Line(5));
}

#[test]
fn bodies_elasticsearch_refuses_whole() {
    for (body, want) in [
        ("", "the request body is required"),
        (
            "{\"upsert\":{}}\n{}\n",
            "line 1: Malformed action/metadata line [1], expected one of [create, delete, index, update] but found [upsert]",
        ),
        (
            "{\"index\":{}}\n",
            "line 1: the index action is not followed by its document",
        ),
        (
            "{\"index\":{}}\n{}\nnot json\n",
            "line 3: Malformed action/metadata line [3], expected an object of one action",
        ),
        (
            "{\"index\":{},\"create\":{}}\n{}\n",
            "line 1: Malformed action/metadata line [1], expected an object of one action",
        ),
        (
            "{\"index\":1}\n{}\n",
            "line 1: Malformed action/metadata line [1], expected the metadata of [index] to be an object",
        ),
    ] {
        let e = bulk(body, Some("i")).unwrap_err().to_string();
        assert!(e.starts_with(want), "{body:?}: {e}");
    }
}

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(json!({"index": {"_index": "a"}}).to_string()),
        Just(json!({"create": {}}).to_string()),
        Just(json!({"delete": {"_id": "1"}}).to_string()),
        Just(json!({"update": {"_id": 2}}).to_string()),
        Just(r#"{"timestamp":1,"severity":"E","source":"s","message":"m"}"#.to_owned()),
        Just(
            r#"{"@timestamp":"2026-12-06T10:28:30Z","message":"m","log.level":"warn"}"#.to_owned()
        ),
        Just(r#"{"level":"info"}"#.to_owned()),
        Just(String::new()),
        "\\PC{0,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Whatever is accepted has an item for every action; the messages are the created
    /// items, each a line the native decoder accepts; the rejected are the documents that
    /// failed to parse.
    #[test]
    fn items_and_messages_agree(lines in prop::collection::vec(line(), 0..12)) {
        let body = lines.join("\n");
        let Ok(b) = bulk(&body, Some("i")) else { return Ok(()) };
        let created = b.items.iter().filter(|i| i.outcome == Outcome::Created).count();
        prop_assert_eq!(created, b.decoded.packet.messages as usize);
        let parsing = b.items.iter().filter(|i| matches!(i.outcome, Outcome::Failed { kind: "document_parsing_exception", .. })).count();
        prop_assert_eq!(parsing, b.decoded.rejected.len());
        if created > 0 {
            let again = decode_packet(b.decoded.packet.ndjson.clone(), Format::Ndjson);
            prop_assert_eq!(again.as_ref(), Ok(&b.decoded.packet));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_bulk(Bytes::from(body), None, &Schema::default(), now());
    }
}

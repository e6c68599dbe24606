use http::StatusCode;
use serde_json::json;

use super::*;

/// A bulk answer with one `create` item per status; a failed item gets an error of
/// `kind`.
fn answer(statuses: &[(u16, &str)]) -> Vec<u8> {
    let items: Vec<Value> = statuses
        .iter()
        .map(|&(status, kind)| {
            let mut item = json!({"_index": "logdist-2026.12.06", "_id": "x", "status": status});
            if !(200..300).contains(&status) {
                item["error"] = json!({"type": kind, "reason": format!("{kind} reason"), "index": "logdist-2026.12.06"});
            }
            json!({"create": item})
        })
        .collect();
    let errors = statuses.iter().any(|&(s, _)| !(200..300).contains(&s));
    serde_json::to_vec(&json!({"took": 3, "errors": errors, "items": items})).unwrap()
}

fn items(verdict: Verdict) -> Vec<Option<ItemError>> {
    match verdict {
        Verdict::Items(items) => items,
        Verdict::Stored => panic!("every item stored"),
    }
}

#[test]
fn every_item_stored_is_an_acknowledgement() {
    let all = answer(&[(201, ""), (201, ""), (200, "")]);
    assert_eq!(verdict(&all, 3), Ok(Verdict::Stored));
    // `errors: false` is taken at its word, items or not.
    assert_eq!(verdict(br#"{"errors":false}"#, 7), Ok(Verdict::Stored));
    // A conflict on `create`: the document is there already.
    let conflict = answer(&[(201, ""), (409, "version_conflict_engine_exception")]);
    assert_eq!(verdict(&conflict, 2), Ok(Verdict::Stored));
}

#[test]
fn items_refused_for_their_content_refuse_only_their_packets() {
    let body = answer(&[
        (201, ""),
        (400, "mapper_parsing_exception"),
        (201, ""),
        (201, ""),
        (400, "document_parsing_exception"),
        (400, "mapper_parsing_exception"),
    ]);
    let items = items(verdict(&body, 6).unwrap());
    assert_eq!(items[1].as_ref().unwrap().status, StatusCode::BAD_REQUEST);
    // Three packets: two messages, one, three.
    let failed = failed(&items, &[2, 1, 3]);
    match &failed.error {
        DeliveryError::Status(status, reason) => {
            assert!(refuses_content(*status), "{status}");
            assert_eq!(
                reason,
                "3 of 6 bulk items failed, the first with mapper_parsing_exception: mapper_parsing_exception reason"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        failed.acknowledged,
        [vec![true, false], vec![true], vec![true, false, false]]
    );
    assert_eq!(
        failed.reasons,
        [
            Some("1 message refused: mapper_parsing_exception: mapper_parsing_exception reason".to_owned()),
            None,
            Some("2 messages refused, the first: document_parsing_exception: document_parsing_exception reason".to_owned()),
        ]
    );
}

#[test]
fn items_that_fail_for_the_cluster_fail_the_delivery_but_keep_what_was_stored() {
    let body = answer(&[
        (400, "mapper_parsing_exception"),
        (201, ""),
        (429, "es_rejected_execution_exception"),
        (503, "unavailable_shards_exception"),
    ]);
    let failed = failed(&items(verdict(&body, 4).unwrap()), &[1, 3]);
    match &failed.error {
        DeliveryError::Status(status, reason) => {
            assert_eq!(*status, StatusCode::TOO_MANY_REQUESTS);
            assert!(!refuses_content(*status));
            assert!(
                reason.contains(
                    "3 of 4 bulk items failed, the first with es_rejected_execution_exception"
                ),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(failed.acknowledged, [vec![false], vec![true, false, false]]);
    // Not a refusal of content: the lane routes the rest again, and gives no reasons.
    assert!(failed.reasons.is_empty());
}

#[test]
fn an_answer_that_is_no_bulk_response_leaves_everything_in_doubt() {
    for (body, says) in [
        (&b""[..], "EOF"),
        (b"<html>502 Bad Gateway</html>", "expected value"),
        (br#"{"acknowledged":true}"#, "missing field `errors`"),
        (br#"{"errors":true}"#, "missing field `items`"),
        (
            br#"{"errors":true,"items":[{"create":{"status":201}}]}"#,
            "1 items for 2 documents",
        ),
        (
            br#"{"errors":true,"items":[{"create":{"status":400}},{"create":{}}]}"#,
            "missing field `status`",
        ),
        (
            br#"{"errors":true,"items":[{"create":{"status":400}},{"other":{"status":400}}]}"#,
            "item 1 is not of a create",
        ),
        (
            br#"{"errors":true,"items":[{"create":{"status":400}},{"create":{"status":1000}}]}"#,
            "item 1 has status 1000",
        ),
    ] {
        let error = verdict(body, 2).unwrap_err();
        assert!(
            error.starts_with("the answer to a bulk request is no bulk response"),
            "{error}"
        );
        assert!(
            error.contains(says),
            "{}: {error}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn reasons_name_the_type_and_the_cause() {
    let error = json!({
        "type": "mapper_parsing_exception",
        "reason": "failed to parse field [status] of type [long] in document with id 'x'. Preview of field's value: 'ok'",
        "caused_by": {"type": "illegal_argument_exception", "reason": "For input string: \"ok\""}
    });
    assert_eq!(
        reason_of(Some(&error)),
        "mapper_parsing_exception: failed to parse field [status] of type [long] in document with id 'x'. Preview of field's value: 'ok' (caused by illegal_argument_exception: For input string: \"ok\")"
    );
    assert_eq!(reason_of(Some(&json!("plain text"))), "plain text");
    assert_eq!(reason_of(None), "no reason given");
    let long = reason_of(Some(&json!({"type": "x", "reason": "é\n".repeat(500)})));
    assert_eq!(long.chars().count(), MAX_REASON + 1);
    assert!(long.ends_with('…') && !long.contains('\n'));
}

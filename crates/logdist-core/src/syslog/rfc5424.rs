//! RFC 5424's header, after `<PRI>1 `: `TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP
//! MSGID SP STRUCTURED-DATA [SP MSG]`, read strictly: a header that does not follow the
//! grammar is refused with what is wrong, since a sender that writes `1 ` writes RFC 5424.
//! Field lengths are not checked (senders exceed APP-NAME's 48 and nothing is gained by
//! refusing them); their characters are (visible ASCII).

use super::{Element, MessageError, Parsed, invalid, message_text, shown};
use crate::mapping::parse_rfc3339;

/// Reads the header and message that follow `<PRI>1 `.
pub(crate) fn parse(text: &str) -> Result<Parsed<'_>, MessageError> {
    let mut rest = text;
    let mut field = |name: &str| -> Result<Option<&str>, MessageError> {
        let (value, after) = rest
            .split_once(' ')
            .ok_or_else(|| invalid(format!("RFC 5424: the header ends before its {name}")))?;
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(format!(
                "RFC 5424: the {name} `{}` is not visible ASCII",
                shown(value).escape_debug()
            )));
        }
        rest = after;
        Ok((value != "-").then_some(value))
    };
    let time = match field("TIMESTAMP")? {
        None => None,
        Some(stamp) => Some(parse_rfc3339(stamp).ok_or_else(|| {
            invalid(format!(
                "RFC 5424: the TIMESTAMP `{}` is not RFC 3339",
                shown(stamp).escape_debug()
            ))
        })?),
    };
    let hostname = field("HOSTNAME")?;
    let appname = field("APP-NAME")?;
    let procid = field("PROCID")?;
    let msgid = field("MSGID")?;
    let (sd, after) = structured_data(rest)?;
    let message = match after.as_bytes().first() {
        None => "",
        Some(b' ') => message_text(&after[1..]),
        Some(_) => {
            return Err(invalid(
                "RFC 5424: the STRUCTURED-DATA is not followed by a space",
            ));
        }
    };
    Ok(Parsed {
        time,
        hostname,
        appname,
        procid,
        msgid,
        sd,
        message,
    })
}

/// `-`, or one or more `[SD-ID *(SP PARAM-NAME="PARAM-VALUE")]`; what follows it.
fn structured_data(text: &str) -> Result<(Vec<Element<'_>>, &str), MessageError> {
    if let Some(after) = text.strip_prefix('-') {
        return Ok((Vec::new(), after));
    }
    if !text.starts_with('[') {
        return Err(invalid(
            "RFC 5424: the STRUCTURED-DATA is neither `-` nor `[...]`",
        ));
    }
    let mut elements = Vec::new();
    let mut rest = text;
    while let Some(inner) = rest.strip_prefix('[') {
        let (id, after) = name(inner, "SD-ID")?;
        let mut params = Vec::new();
        rest = after;
        loop {
            if let Some(after) = rest.strip_prefix(']') {
                rest = after;
                break;
            }
            let Some(param) = rest.strip_prefix(' ') else {
                return Err(invalid(format!(
                    "RFC 5424: the SD-ELEMENT `{id}` is not closed by `]`"
                )));
            };
            let (param, after) = name(param, "PARAM-NAME")?;
            let after = after.strip_prefix("=\"").ok_or_else(|| {
                invalid(format!(
                    "RFC 5424: the parameter `{param}` of `{id}` has no `=\"value\"`"
                ))
            })?;
            let (value, after) = value(after).ok_or_else(|| {
                invalid(format!(
                    "RFC 5424: the value of `{param}` in `{id}` has no closing quote"
                ))
            })?;
            params.push((param, value));
            rest = after;
        }
        elements.push(Element { id, params });
    }
    Ok((elements, rest))
}

/// An SD-NAME: 1 to 32 visible ASCII characters but `=`, space, `]` and `"`; RFC 5424's
/// bound of 32 is kept here, where it is what tells a name from garbage.
fn name<'a>(text: &'a str, what: &str) -> Result<(&'a str, &'a str), MessageError> {
    let len = text
        .bytes()
        .take_while(|&b| b.is_ascii_graphic() && !matches!(b, b'=' | b']' | b'"'))
        .count();
    if len == 0 || len > 32 {
        return Err(invalid(format!(
            "RFC 5424: an {what} is 1 to 32 visible ASCII characters but `=`, `]` and `\"`"
        )));
    }
    Ok(text.split_at(len))
}

/// A PARAM-VALUE up to its closing quote, with `\"`, `\\` and `\]` unescaped (any other
/// backslash is kept, as RFC 5424 says); what follows the quote. `None` without one.
fn value(text: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut from = 0;
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'"' => {
                out.push_str(&text[from..at]);
                return Some((out, &text[at + 1..]));
            }
            b'\\' if matches!(bytes.get(at + 1), Some(b'"' | b'\\' | b']')) => {
                out.push_str(&text[from..at]);
                from = at + 1;
                at += 2;
            }
            _ => at += 1,
        }
    }
    None
}

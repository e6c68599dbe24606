//! A JSON object read as its fields in order, every value kept as the text it was sent
//! as: what the mapping takes from is removed, and the rest is written back untouched.
//!
//! Nested objects are opened only when a dotted name reaches into them, and an opened
//! object nothing was taken from is written back as its original text too.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// An object's fields, in the order they were sent.
pub(crate) struct Object<'a> {
    /// The object as sent: written back as it is while nothing was taken from it.
    raw: &'a str,
    fields: Vec<Field<'a>>,
    /// Whether a field of it (or of an object in it) was taken.
    touched: bool,
}

pub(crate) struct Field<'a> {
    pub(crate) key: Cow<'a, str>,
    value: Value<'a>,
}

enum Value<'a> {
    Raw(&'a RawValue),
    /// An object opened by a dotted lookup, and its text as sent.
    Object(&'a RawValue, Object<'a>),
    /// Taken by the mapping: not written back.
    Taken,
}

impl<'a> Object<'a> {
    /// Reads `raw` as an object; the error is serde_json's, or "expected a JSON object".
    pub(crate) fn parse(raw: &'a str) -> Result<Object<'a>, serde_json::Error> {
        let Fields(fields) = serde_json::from_str(raw)?;
        Ok(Object {
            raw,
            fields,
            touched: false,
        })
    }

    /// The value of the first field named `key` at this level, as sent.
    pub(crate) fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.fields.iter().find(|f| f.key == key)?.raw()
    }

    /// Finds the value at `path` and takes it if `read` makes something of it; `None`
    /// (and nothing taken) if there is no such value or `read` says no.
    ///
    /// A path `a.b.c` names a field `a.b.c` of this object, or `b.c` (and so on) of an
    /// object in its field `a`, or `c` of one in `a.b`: dotted keys and nested objects
    /// both, and the first field in the record's order that leads to a value wins.
    pub(crate) fn take<T>(
        &mut self,
        path: &str,
        read: &mut impl FnMut(&'a RawValue) -> Option<T>,
    ) -> Option<T> {
        for field in &mut self.fields {
            let key = field.key.as_ref();
            if key == path {
                let raw = field.raw()?;
                let Some(found) = read(raw) else {
                    continue;
                };
                field.value = Value::Taken;
                self.touched = true;
                return Some(found);
            }
            // `key.` starts the path: the dot is checked first, as most keys are no prefix
            // of the name looked for and this runs for every name of every field.
            let dotted = path.as_bytes().get(key.len()) == Some(&b'.') && path.starts_with(key);
            let Some(rest) = dotted.then(|| &path[key.len() + 1..]) else {
                continue;
            };
            if let Some(found) = field.open().and_then(|inner| inner.take(rest, read)) {
                self.touched = true;
                return Some(found);
            }
        }
        None
    }

    /// Writes the object as JSON: its original text if nothing was taken from it, else
    /// the fields left, each value as sent. An object emptied by what was taken is `None`:
    /// the field holding it goes too.
    pub(crate) fn write(&self, out: &mut Vec<u8>) -> bool {
        if !self.touched {
            out.extend_from_slice(self.raw.as_bytes());
            return true;
        }
        let start = out.len();
        out.push(b'{');
        let mut any = false;
        for field in &self.fields {
            any |= field.write_as(&field.key, out, any);
        }
        if !any {
            out.truncate(start);
            return false;
        }
        out.push(b'}');
        true
    }

    /// The fields left, written after others (a `,` before each): what a mapped message
    /// keeps of the record at its top level. `rename` gives a key another name.
    pub(crate) fn write_fields(
        &self,
        out: &mut Vec<u8>,
        rename: impl Fn(&str) -> Option<&'static str>,
    ) {
        for field in &self.fields {
            let key = rename(&field.key).unwrap_or(&field.key);
            field.write_as(key, out, true);
        }
    }
}

impl<'a> Field<'a> {
    /// The value as sent; `None` once taken.
    pub(crate) fn raw(&self) -> Option<&'a RawValue> {
        match &self.value {
            Value::Raw(raw) => Some(raw),
            Value::Object(raw, _) => Some(raw),
            Value::Taken => None,
        }
    }

    /// The value as an object, opened for a lookup; `None` if it is no object.
    fn open(&mut self) -> Option<&mut Object<'a>> {
        if let Value::Raw(raw) = self.value {
            if !raw.get().starts_with('{') {
                return None;
            }
            self.value = Value::Object(raw, Object::parse(raw.get()).ok()?);
        }
        match &mut self.value {
            Value::Object(_, object) => Some(object),
            _ => None,
        }
    }

    /// `"key":value`, a comma first if `comma`; whether anything was written.
    fn write_as(&self, key: &str, out: &mut Vec<u8>, comma: bool) -> bool {
        let start = out.len();
        if comma {
            out.push(b',');
        }
        write_string(out, key);
        out.push(b':');
        let written = match &self.value {
            Value::Raw(raw) => {
                out.extend_from_slice(raw.get().as_bytes());
                true
            }
            Value::Object(_, object) => object.write(out),
            Value::Taken => false,
        };
        if !written {
            out.truncate(start);
        }
        written
    }
}

/// Writes `text` as a JSON string.
pub(crate) fn write_string(out: &mut Vec<u8>, text: &str) {
    let plain = text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
    if plain {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, text).expect("writing to a Vec never fails");
    }
}

/// A JSON string's text: borrowed when it has no escapes; `None` for any other value.
pub(crate) fn text(raw: &RawValue) -> Option<Cow<'_, str>> {
    let inner = raw.get().strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(raw.get())
            .ok()
            .map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

// === Reading an object's fields ===

struct Fields<'a>(Vec<Field<'a>>);

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(Key(key)) = map.next_key()? {
            let value: &'de RawValue = map.next_value()?;
            fields.push(Field {
                key,
                value: Value::Raw(value),
            });
        }
        Ok(Fields(fields))
    }
}

/// A key, borrowed from the record when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(key)))
    }
    fn visit_str<E>(self, key: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(key.to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(object: &mut Object<'_>, path: &str) -> Option<String> {
        object.take(path, &mut |raw| Some(raw.get().to_owned()))
    }

    fn rest(object: &Object<'_>) -> String {
        let mut out = Vec::new();
        object.write(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn dotted_and_nested_names_both_reach_a_value() {
        let raw =
            r#"{"log.level":"warn","service":{"name":"api","version":"1"},"a":{"b.c":{"d":1}}}"#;
        let mut o = Object::parse(raw).unwrap();
        assert_eq!(rest(&o), raw, "untouched, it is written as sent");
        assert_eq!(take(&mut o, "log.level").as_deref(), Some("\"warn\""));
        assert_eq!(take(&mut o, "service.name").as_deref(), Some("\"api\""));
        assert_eq!(take(&mut o, "a.b.c.d").as_deref(), Some("1"));
        assert_eq!(take(&mut o, "service.name"), None, "taken once");
        assert_eq!(rest(&o), r#"{"service":{"version":"1"}}"#);
    }

    #[test]
    fn untouched_nested_objects_keep_their_text() {
        let raw = r#"{"k8s": { "pod" : "p" , "ns":"n"}, "msg":"x"}"#;
        let mut o = Object::parse(raw).unwrap();
        assert_eq!(take(&mut o, "k8s.container"), None);
        assert_eq!(take(&mut o, "msg").as_deref(), Some("\"x\""));
        assert_eq!(rest(&o), r#"{"k8s":{ "pod" : "p" , "ns":"n"}}"#);
    }

    #[test]
    fn a_value_read_declines_is_left_and_the_next_match_is_tried() {
        let mut o = Object::parse(r#"{"t":"soon","t":5}"#).unwrap();
        let found = o.take("t", &mut |raw| raw.get().parse::<i64>().ok());
        assert_eq!(found, Some(5));
        assert_eq!(rest(&o), r#"{"t":"soon"}"#);
    }

    #[test]
    fn strings_read_with_and_without_escapes() {
        let raw: &RawValue = serde_json::from_str(r#""a\"b""#).unwrap();
        assert_eq!(text(raw).as_deref(), Some("a\"b"));
        let raw: &RawValue = serde_json::from_str(r#""plain""#).unwrap();
        assert!(matches!(text(raw), Some(Cow::Borrowed("plain"))));
        let raw: &RawValue = serde_json::from_str("12").unwrap();
        assert_eq!(text(raw), None);
    }
}

//! A JSON object decoded straight into a row's values: the keys looked up among the columns as
//! they are read, values borrowed from the record where they can be, other keys skipped
//! unread. No map of the whole object is built, which is most of what decoding a record
//! through `serde_json::Value` costs. The values are those [`ColumnType::parse_json`] gives.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::column::{clip, ColumnType, Value};

/// A JSON value as it comes.
#[derive(Debug)]
enum Raw<'a> {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(Cow<'a, str>),
    /// An array or an object (only a VARCHAR column takes one, as its JSON text).
    Nested(serde_json::Value),
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Raw<'de>, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E>(self) -> Result<Raw<'de>, E> {
        Ok(Raw::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Raw<'de>, E> {
        Ok(Raw::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Raw<'de>, E> {
        Ok(Raw::I64(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Raw<'de>, E> {
        Ok(Raw::U64(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Raw<'de>, E> {
        Ok(Raw::F64(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Raw<'de>, E> {
        Ok(Raw::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Raw<'de>, E> {
        Ok(Raw::Str(Cow::Owned(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Raw<'de>, E> {
        Ok(Raw::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Raw<'de>, A::Error> {
        let v = serde::Deserialize::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
        Ok(Raw::Nested(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Raw<'de>, A::Error> {
        let v = serde::Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(Raw::Nested(v))
    }
}

/// A key, borrowed from the record unless it has escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
                Ok(Cow::Owned(v.to_string()))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

struct RawSeed;

impl<'de> DeserializeSeed<'de> for RawSeed {
    type Value = Raw<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Raw<'de>, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

/// The columns a record's object fills, by name.
pub(crate) struct JsonRow {
    names: Vec<String>,
    /// Per column: whether its name can be matched against a key's bytes in place.
    plain: Vec<bool>,
    /// With many columns, a column by name (with few, a look along them is quicker).
    by_name: Option<HashMap<String, usize>>,
}

/// The values of one object: `(value, whether its key matched exactly)` per column.
struct RowVisitor<'s> {
    row: &'s JsonRow,
}

impl<'de> Visitor<'de> for RowVisitor<'_> {
    type Value = Vec<(Raw<'de>, bool)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out: Vec<(Raw<'de>, bool)> = self.row.names.iter().map(|_| (Raw::Null, false)).collect();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            // a key matches a column exactly, or else ignoring case (an exact match wins)
            let (i, exact) = match self.row.position(&key) {
                Some(i) => (Some(i), true),
                None => (self.row.names.iter().position(|n| n.eq_ignore_ascii_case(&key)), false),
            };
            match i {
                Some(i) if exact || !out[i].1 => out[i] = (map.next_value_seed(RawSeed)?, exact),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

impl JsonRow {
    /// Objects filling columns `names`.
    pub(crate) fn new(names: &[String]) -> Self {
        let by_name = (names.len() > 16).then(|| names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect());
        let plain = names.iter().map(|n| super::json_flat::plain(n)).collect();
        Self { names: names.to_vec(), plain, by_name }
    }

    /// The column named exactly `key`.
    fn position(&self, key: &str) -> Option<usize> {
        match &self.by_name {
            Some(map) => map.get(key).copied(),
            None => self.names.iter().position(|n| n == key),
        }
    }

    /// Decode `bytes` (one JSON object) and hand its values, of `types`, to `take`.
    pub(crate) fn decode(
        &self,
        bytes: &[u8],
        types: &[ColumnType],
        nullable: &[bool],
        take: &mut dyn FnMut(&[Value]),
    ) -> Result<(), String> {
        // most records take the quicker path; the rest (and every error) come here
        if super::json_flat::scan(bytes, &self.names, &self.plain, types, nullable, take).is_some() {
            return Ok(());
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let raws = de.deserialize_map(RowVisitor { row: self }).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => "expected a JSON object".to_string(),
            _ => format!("invalid JSON: {e}"),
        })?;
        de.end().map_err(|e| format!("invalid JSON: {e}"))?;
        let mut values = Vec::with_capacity(raws.len());
        for (i, (raw, _)) in raws.iter().enumerate() {
            let t = &types[i];
            let value = convert(t, raw).ok_or_else(|| {
                format!("bad value {} for column '{}' ({})", clip(&json_text(raw)), self.names[i], t.sql_name())
            })?;
            if value == Value::Null && !nullable[i] {
                return Err(format!("column '{}' is NOT NULL but the value is null or missing", self.names[i]));
            }
            values.push(value);
        }
        take(&values);
        Ok(())
    }
}

/// A raw value as a column of type `t` holds it (as [`ColumnType::parse_json`] does).
fn convert<'a>(t: &ColumnType, raw: &'a Raw<'a>) -> Option<Value<'a>> {
    let number = |n: serde_json::Number| t.parse_json_number(&n);
    match raw {
        Raw::Null => Some(Value::Null),
        Raw::Str(s) => t.parse_text(s),
        Raw::Bool(b) => t.parse_json_bool(*b),
        Raw::I64(v) => number(serde_json::Number::from(*v)),
        Raw::U64(v) => number(serde_json::Number::from(*v)),
        Raw::F64(v) => serde_json::Number::from_f64(*v).and_then(number),
        Raw::Nested(v) => t.parse_json(v),
    }
}

/// How the value is written in JSON, for messages.
fn json_text(raw: &Raw) -> String {
    match raw {
        Raw::Null => "null".into(),
        Raw::Bool(b) => b.to_string(),
        Raw::I64(v) => v.to_string(),
        Raw::U64(v) => v.to_string(),
        Raw::F64(v) => serde_json::Number::from_f64(*v).map_or_else(|| v.to_string(), |n| n.to_string()),
        Raw::Str(s) => serde_json::to_string(s.as_ref()).unwrap_or_default(),
        Raw::Nested(v) => v.to_string(),
    }
}

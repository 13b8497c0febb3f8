//! PHP values and JSON, each as the other (the channel server's two
//! encodings meet here): a PHP list (keys 0, 1, … in order) is a JSON
//! array, any other PHP array a JSON object, entries in their order; a JSON
//! object is a PHP array with PHP's key rules, as `json_decode($text,
//! true)` gives it. A PHP string that is not UTF-8 and a NaN or infinite
//! float have no JSON form.

use super::php::{PhpKey, PhpValue};

/// A PHP value as JSON text, entries in their PHP order.
///
/// # Errors
///
/// A string or key that is not UTF-8, a float JSON cannot hold.
pub(crate) fn php_to_json(value: &PhpValue) -> Result<String, String> {
    serde_json::to_string(&AsJson(value)).map_err(|e| e.to_string())
}

/// JSON text as a PHP value (`json_decode($text, true)`): integers that fit
/// 64 bits stay ints, other numbers are floats, objects are arrays with
/// PHP's key rules, in their order.
///
/// # Errors
///
/// Text that is not JSON.
pub(crate) fn json_to_php(text: &str) -> Result<PhpValue, String> {
    serde_json::from_str::<FromJson>(text)
        .map(|v| v.0)
        .map_err(|e| e.to_string())
}

/// A PHP value seen as JSON.
struct AsJson<'a>(&'a PhpValue);

impl serde::Serialize for AsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap, SerializeSeq};
        fn text<E: Error>(bytes: &[u8]) -> Result<&str, E> {
            std::str::from_utf8(bytes)
                .map_err(|_| E::custom("a PHP string that is not UTF-8 has no JSON form"))
        }
        match self.0 {
            PhpValue::Null => s.serialize_unit(),
            PhpValue::Bool(b) => s.serialize_bool(*b),
            PhpValue::Int(n) => s.serialize_i64(*n),
            PhpValue::Float(f) if f.is_finite() => s.serialize_f64(*f),
            PhpValue::Float(f) => Err(S::Error::custom(format!("the float {f} has no JSON form"))),
            PhpValue::Str(bytes) => s.serialize_str(text::<S::Error>(bytes)?),
            PhpValue::Array(entries) => {
                let is_list = entries
                    .iter()
                    .enumerate()
                    .all(|(i, (key, _))| *key == PhpKey::Int(i as i64));
                if is_list {
                    let mut seq = s.serialize_seq(Some(entries.len()))?;
                    for (_, v) in entries {
                        seq.serialize_element(&AsJson(v))?;
                    }
                    seq.end()
                } else {
                    let mut map = s.serialize_map(Some(entries.len()))?;
                    for (key, v) in entries {
                        match key {
                            PhpKey::Int(n) => map.serialize_entry(&n.to_string(), &AsJson(v))?,
                            PhpKey::Str(bytes) => {
                                map.serialize_entry(text::<S::Error>(bytes)?, &AsJson(v))?
                            }
                        }
                    }
                    map.end()
                }
            }
        }
    }
}

/// A PHP value read from JSON.
struct FromJson(PhpValue);

impl<'de> serde::Deserialize<'de> for FromJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FromJsonVisitor).map(FromJson)
    }
}

struct FromJsonVisitor;

impl<'de> serde::de::Visitor<'de> for FromJsonVisitor {
    type Value = PhpValue;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<PhpValue, E> {
        Ok(PhpValue::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<PhpValue, E> {
        Ok(PhpValue::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<PhpValue, E> {
        Ok(PhpValue::Int(n))
    }
    fn visit_u64<E>(self, n: u64) -> Result<PhpValue, E> {
        Ok(i64::try_from(n).map_or(PhpValue::Float(n as f64), PhpValue::Int))
    }
    fn visit_f64<E>(self, f: f64) -> Result<PhpValue, E> {
        Ok(PhpValue::Float(f))
    }
    fn visit_str<E>(self, s: &str) -> Result<PhpValue, E> {
        Ok(PhpValue::str(s))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<PhpValue, A::Error> {
        let mut items = Vec::new();
        while let Some(FromJson(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(PhpValue::list(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<PhpValue, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, FromJson(v))) =
            map.next_entry::<std::borrow::Cow<'de, str>, FromJson>()?
        {
            entries.push((PhpKey::from_bytes(key.as_bytes()), v));
        }
        Ok(PhpValue::array(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::php;

    #[test]
    fn conversions_follow_json_decode() {
        let php = php::decode(
            br#"a:4:{i:0;s:1:"x";s:1:"k";a:2:{i:0;b:1;i:1;N;}s:1:"5";d:0.5;s:1:"n";i:-1;}"#,
        )
        .unwrap();
        let json = php_to_json(&php).unwrap();
        assert_eq!(json, r#"{"0":"x","k":[true,null],"5":0.5,"n":-1}"#);
        assert_eq!(
            json_to_php(&json).unwrap(),
            php,
            "and back, in order, with int keys again"
        );
        assert_eq!(
            json_to_php("[18446744073709551615, 1.5e300]").unwrap(),
            PhpValue::list([
                PhpValue::Float(18446744073709551615.0),
                PhpValue::Float(1.5e300)
            ])
        );
        assert!(php_to_json(&PhpValue::Str(vec![0xff])).is_err());
        assert!(php_to_json(&PhpValue::Float(f64::NAN)).is_err());
    }
}

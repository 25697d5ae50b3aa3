//! JSON objects -> [`EventBuilder`]: members are read straight into the
//! builder (no intermediate map), so the first bad member is reported by
//! name and the rest of the body is still checked for well-formedness.

use std::borrow::Cow;
use std::fmt;

use super::{ErrorCode, EventBuilder, Field, FieldError};

/// Field-level errors travel inside the Ok side so the visitor can stop at
/// the first one and still report it as a FieldError, not a serde error.
pub(super) struct BuilderVisitor;

impl<'de> serde::de::Visitor<'de> for BuilderVisitor {
    type Value = Result<EventBuilder, FieldError>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object of FraudScore RT parameters")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut b = EventBuilder::new();
        while let Some(name) = map.next_key::<Cow<'de, str>>()? {
            let value: JsonScalar<'de> = map.next_value()?;
            let text: Cow<str> = match value {
                JsonScalar::Null => continue,
                JsonScalar::Str(s) => s,
                JsonScalar::Int(i) => Cow::Owned(i.to_string()),
                JsonScalar::Uint(u) => Cow::Owned(u.to_string()),
                JsonScalar::Float(f) => Cow::Owned(f.to_string()),
                JsonScalar::Bool | JsonScalar::Other => {
                    // The name must still be a known field to say "invalid".
                    let err = match Field::lookup(&name) {
                        None => b.set(&name, "").unwrap_err(),
                        Some(_) => FieldError::new(
                            ErrorCode::InvalidField,
                            name.into_owned(),
                            "must be a string or a number",
                        ),
                    };
                    return drain(map, err);
                }
            };
            if let Err(e) = b.set(&name, &text) {
                return drain(map, e);
            }
        }
        Ok(Ok(b))
    }
}

/// Consumes the rest of the object so the JSON stays well-formed-checked.
fn drain<'de, A: serde::de::MapAccess<'de>>(
    mut map: A,
    err: FieldError,
) -> Result<Result<EventBuilder, FieldError>, A::Error> {
    while map
        .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
        .is_some()
    {}
    Ok(Err(err))
}

/// A JSON value as far as an event field cares.
enum JsonScalar<'a> {
    Null,
    Str(Cow<'a, str>),
    Int(i64),
    Uint(u64),
    Float(f64),
    Bool,
    Other,
}

impl<'de> serde::Deserialize<'de> for JsonScalar<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = JsonScalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(JsonScalar::Null)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(JsonScalar::Null)
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(JsonScalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(JsonScalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(JsonScalar::Str(Cow::Owned(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(JsonScalar::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(JsonScalar::Uint(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(JsonScalar::Float(v))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(JsonScalar::Bool)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut s: A,
            ) -> Result<Self::Value, A::Error> {
                while s.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(JsonScalar::Other)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Self::Value, A::Error> {
                while m
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(JsonScalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}

pub(super) fn json_error(e: serde_json::Error) -> FieldError {
    let code = if e.is_data() {
        "body must be a JSON object of FraudScore RT parameters"
    } else {
        "malformed JSON"
    };
    FieldError::new(
        ErrorCode::InvalidField,
        "body",
        format!("{code}: line {} column {}", e.line(), e.column()),
    )
}

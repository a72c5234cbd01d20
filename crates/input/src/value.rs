//! A serde visitor that builds a JSON value within the limits, for every format alike:
//! it refuses nesting beyond the depth limit before descending (so no parser recurses
//! further), counts values, refuses duplicate keys and non-finite numbers.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::{Limit, Limits};

/// The key under which the `toml` crate hands a datetime to `deserialize_any`.
const TOML_DATETIME_KEY: &str = "$__toml_private_datetime";

/// Counters shared by all the seeds of one parse.
pub(crate) struct State<'l> {
    limits: &'l Limits,
    values: Cell<usize>,
    breach: Cell<Option<Limit>>,
}

impl<'l> State<'l> {
    pub(crate) fn new(limits: &'l Limits) -> Self {
        State {
            limits,
            values: Cell::new(0),
            breach: Cell::new(None),
        }
    }

    /// The seed of the document's root.
    pub(crate) fn seed(&self) -> ValueSeed<'_, 'l> {
        ValueSeed {
            state: self,
            depth: 0,
        }
    }

    /// The limit that stopped the parse, if one did.
    pub(crate) fn breach(&self) -> Option<Limit> {
        self.breach.get()
    }

    pub(crate) fn set_breach(&self, limit: Limit) {
        if self.breach.get().is_none() {
            self.breach.set(Some(limit));
        }
    }

    fn fail<E: de::Error>(&self, limit: Limit) -> E {
        self.set_breach(limit);
        E::custom(format!("the input {limit}"))
    }

    fn count<E: de::Error>(&self) -> Result<(), E> {
        let n = self.values.get() + 1;
        self.values.set(n);
        if n > self.limits.max_values {
            return Err(self.fail(Limit::Values {
                max: self.limits.max_values,
            }));
        }
        Ok(())
    }
}

/// Deserializes one value at `depth` (the number of maps and lists around it).
#[derive(Clone, Copy)]
pub(crate) struct ValueSeed<'s, 'l> {
    state: &'s State<'l>,
    depth: usize,
}

impl ValueSeed<'_, '_> {
    /// The depth of a map or list opened here, or the depth-limit error.
    fn enter<E: de::Error>(&self) -> Result<usize, E> {
        let depth = self.depth + 1;
        if depth > self.state.limits.max_depth {
            return Err(self.state.fail(Limit::Depth {
                max: self.state.limits.max_depth,
            }));
        }
        Ok(depth)
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.state.count()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.state.count()?;
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.state.count()?;
        Ok(Value::from(v))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        match i64::try_from(v) {
            Ok(v) => self.visit_i64(v),
            Err(_) => match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::custom(format!("the number {v} is too large"))),
            },
        }
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format!("the number {v} is too large"))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.state.count()?;
        // JSON has no NaN or infinity; dropping the value silently would lose a setting.
        Number::from_f64(v).map(Value::Number).ok_or_else(|| {
            E::custom(format!(
                "`{v}` is not a finite number; give a number such as 60"
            ))
        })
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.state.count()?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.state.count()?;
        Ok(Value::String(v))
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Value, E> {
        Err(E::custom("binary values are not supported; give text"))
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.state.count()?;
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let depth = self.enter()?;
        self.state.count()?;
        let inner = ValueSeed { depth, ..self };
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let depth = self.enter()?;
        self.state.count()?;
        let inner = ValueSeed { depth, ..self };
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if out.is_empty() && key == TOML_DATETIME_KEY {
                // A TOML datetime: keep its text.
                let text: String = map.next_value()?;
                return Ok(Value::String(text));
            }
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "duplicate key `{key}`; give each key once"
                )));
            }
            let value = map.next_value_seed(inner)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// A map key: text, or a scalar written as its text (YAML allows `1: a`).
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = String;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map key (text or a scalar)")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Ok("null".to_owned())
    }
}

//! `pb2dict` / `dict2pb` of crit's `pb2dict.py` over prost-reflect dynamic messages: a message
//! becomes an object of its set fields in field-number order (Python's `ListFields`), enums
//! their value names, bytes base64 (or quoted-printable with `(criu).conv`), and with `pretty`
//! the `(criu)` options apply: `hex` (inherited by nested fields), `dev`/`odev`, `flags`, `dict`
//! and `ipadd`.

use super::codec;
use super::json::Json;
use super::CritError;
use prost_reflect::{
    DescriptorPool, DynamicMessage, ExtensionDescriptor, FieldDescriptor, Kind, MessageDescriptor,
    Value,
};
use std::collections::HashMap;
use std::sync::OnceLock;

/// The `(criu)` options of one field.
#[derive(Debug, Clone, Default)]
pub(super) struct CriuOpts {
    hex: bool,
    ipadd: bool,
    flags: Option<String>,
    dev: bool,
    odev: bool,
    dict: Option<String>,
    conv: Option<String>,
}

/// The descriptor pool of cryo's protos and a cache of field options.
pub(super) struct Ctx {
    pool: DescriptorPool,
    criu_ext: Option<ExtensionDescriptor>,
    opts: HashMap<String, CriuOpts>,
}

fn err(msg: impl Into<String>) -> CritError {
    CritError::Convert(msg.into())
}

impl Ctx {
    pub(super) fn new() -> Result<Ctx, CritError> {
        // Decoding the descriptors of every image proto costs far more than converting a
        // small image (crit x and validate convert many, fuzzing millions): once per process.
        // The pool is reference counted, a clone is cheap.
        static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
        let pool = POOL
            .get_or_init(|| {
                DescriptorPool::decode(crate::FILE_DESCRIPTOR_SET)
                    .map_err(|e| format!("load image descriptors: {e}"))
            })
            .clone()
            .map_err(err)?;
        let criu_ext = pool.get_extension_by_name("criu");
        Ok(Ctx {
            pool,
            criu_ext,
            opts: HashMap::new(),
        })
    }

    pub(super) fn message(&self, name: &str) -> Result<MessageDescriptor, CritError> {
        self.pool
            .get_message_by_name(name)
            .ok_or_else(|| err(format!("no message {name}")))
    }

    fn opts(&mut self, f: &FieldDescriptor) -> CriuOpts {
        let key = f.full_name().to_string();
        if let Some(o) = self.opts.get(&key) {
            return o.clone();
        }
        let mut o = CriuOpts::default();
        if let Some(ext) = &self.criu_ext {
            let options = f.options();
            if options.has_extension(ext) {
                if let Value::Message(m) = options.get_extension(ext).as_ref() {
                    let b = |n: &str| {
                        matches!(m.get_field_by_name(n).as_deref(), Some(Value::Bool(true)))
                    };
                    let s = |n: &str| {
                        if !m.has_field_by_name(n) {
                            return None;
                        }
                        match m.get_field_by_name(n).as_deref() {
                            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                            _ => None,
                        }
                    };
                    o = CriuOpts {
                        hex: b("hex"),
                        ipadd: b("ipadd"),
                        flags: s("flags"),
                        dev: b("dev"),
                        odev: b("odev"),
                        dict: s("dict"),
                        conv: s("conv"),
                    };
                }
            }
        }
        self.opts.insert(key, o.clone());
        o
    }

    /// Decodes one message of type `desc` from `bytes`, the entry at `offset` in the image
    /// (its size word), which errors name.
    pub(super) fn decode_msg(
        &self,
        desc: &MessageDescriptor,
        bytes: &[u8],
        offset: usize,
    ) -> Result<DynamicMessage, CritError> {
        DynamicMessage::decode(desc.clone(), bytes)
            .map_err(|e| err(format!("decode {} at offset {offset}: {e}", desc.name())))
    }

    /// `pb2dict(msg, pretty, is_hex)`.
    pub(super) fn pb2dict(&mut self, msg: &DynamicMessage, pretty: bool, is_hex: bool) -> Json {
        let mut fields: Vec<(FieldDescriptor, &Value)> = msg.fields().collect();
        fields.sort_by_key(|(f, _)| f.number());
        let mut out = Vec::with_capacity(fields.len());
        for (f, v) in fields {
            let o = self.opts(&f);
            let jv = match v {
                Value::List(items) => {
                    let ip = if pretty && o.ipadd {
                        let words: Vec<u32> = items
                            .iter()
                            .filter_map(|x| match x {
                                Value::U32(w) => Some(*w),
                                _ => None,
                            })
                            .collect();
                        codec::ip_to_string(&words)
                    } else {
                        None
                    };
                    match ip {
                        Some(s) => Json::Array(vec![Json::Str(s)]),
                        None => Json::Array(
                            items
                                .iter()
                                .map(|x| self.cast(&f, &o, x, pretty, is_hex))
                                .collect(),
                        ),
                    }
                }
                _ => self.cast(&f, &o, v, pretty, is_hex),
            };
            out.push((f.name().to_string(), jv));
        }
        Json::Object(out)
    }

    /// `_pb2dict_cast` of one value.
    fn cast(
        &mut self,
        f: &FieldDescriptor,
        o: &CriuOpts,
        v: &Value,
        pretty: bool,
        is_hex: bool,
    ) -> Json {
        let is_hex = is_hex || o.hex;
        let int = |i: i128, this: &mut Self| {
            let _ = this;
            if !pretty {
                return Json::Int(i);
            }
            if is_hex {
                return Json::Str(if i < 0 {
                    format!("-0x{:x}", -i)
                } else {
                    format!("0x{i:x}")
                });
            }
            if o.dev {
                return Json::Str(codec::decode_dev(i as u64, o.odev));
            }
            if let Some(fl) = &o.flags {
                return Json::Str(match codec::flags_map(fl) {
                    Some(map) => codec::map_flags(i as u64, map),
                    None => format!("0x{i:x}"),
                });
            }
            if let Some(d) = &o.dict {
                if let Some(map) = codec::dict_map(d, f.name()) {
                    if let Some((_, name)) = map.iter().find(|(n, _)| i128::from(*n) == i) {
                        return Json::Str((*name).to_string());
                    }
                }
            }
            Json::Int(i)
        };
        match v {
            Value::Message(m) => self.pb2dict(m, pretty, is_hex),
            Value::Bytes(b) => Json::Str(match o.conv.as_deref() {
                Some("unix_name") => codec::qp_encode(b),
                _ => codec::b64_encode(b),
            }),
            Value::EnumNumber(n) => match f.kind() {
                Kind::Enum(e) => match e.get_value(*n) {
                    Some(ev) => Json::Str(ev.name().to_string()),
                    None => Json::Int(i128::from(*n)),
                },
                _ => Json::Int(i128::from(*n)),
            },
            Value::Bool(b) => Json::Bool(*b),
            Value::String(s) => Json::Str(s.clone()),
            Value::I32(i) => int(i128::from(*i), self),
            Value::I64(i) => int(i128::from(*i), self),
            Value::U32(i) => int(i128::from(*i), self),
            Value::U64(i) => int(i128::from(*i), self),
            Value::F32(x) => Json::Float(f64::from(*x)),
            Value::F64(x) => Json::Float(*x),
            Value::List(_) | Value::Map(_) => Json::Null,
        }
    }

    /// `dict2pb`: a message of type `desc` from the object `d` (unknown keys ignored).
    pub(super) fn dict2pb(
        &mut self,
        d: &Json,
        desc: &MessageDescriptor,
    ) -> Result<DynamicMessage, CritError> {
        let Json::Object(_) = d else {
            return Err(err(format!("{}: expected an object", desc.name())));
        };
        let mut msg = DynamicMessage::new(desc.clone());
        for f in desc.fields() {
            let Some(v) = d.get(f.name()) else {
                continue;
            };
            let o = self.opts(&f);
            let value = if f.is_list() {
                let Json::Array(items) = v else {
                    return Err(err(format!("{}: expected a list", f.full_name())));
                };
                if o.ipadd && matches!(items.first(), Some(Json::Str(_))) {
                    let s = items.first().and_then(Json::as_str).unwrap_or("");
                    let words = codec::ip_from_string(s).map_err(err)?;
                    Value::List(words.into_iter().map(Value::U32).collect())
                } else {
                    let mut out = Vec::with_capacity(items.len());
                    for item in items {
                        out.push(self.value_of(&f, &o, item)?);
                    }
                    Value::List(out)
                }
            } else {
                self.value_of(&f, &o, v)?
            };
            msg.try_set_field(&f, value)
                .map_err(|e| err(format!("{}: {e}", f.full_name())))?;
        }
        Ok(msg)
    }

    /// `_dict2pb_cast` of one value.
    fn value_of(
        &mut self,
        f: &FieldDescriptor,
        o: &CriuOpts,
        v: &Json,
    ) -> Result<Value, CritError> {
        let bad = |what: &str| err(format!("{}: {what}: {v:?}", f.full_name()));
        let int = |v: &Json| -> Result<i128, CritError> {
            match v {
                Json::Int(i) => Ok(*i),
                Json::Bool(b) => Ok(i128::from(*b)),
                Json::Str(s) => {
                    if o.dev {
                        return codec::encode_dev(s, o.odev).map_err(err);
                    }
                    if let Some(map) = o.flags.as_deref().and_then(codec::flags_map) {
                        return codec::unmap_flags(s, map).map_err(err);
                    }
                    if let Some(map) = o.dict.as_deref().and_then(|d| codec::dict_map(d, f.name()))
                    {
                        if let Some((n, _)) = map.iter().find(|(_, name)| name == s) {
                            return Ok(i128::from(*n));
                        }
                    }
                    codec::parse_int(s).map_err(err)
                }
                _ => Err(bad("expected an integer")),
            }
        };
        let range = |what: &str| bad(&format!("out of range for {what}"));
        Ok(match f.kind() {
            Kind::Message(m) => Value::Message(self.dict2pb(v, &m)?),
            Kind::Bytes => {
                let s = v.as_str().ok_or_else(|| bad("expected a string"))?;
                let data = match o.conv.as_deref() {
                    Some("unix_name") => codec::qp_decode(s),
                    _ => codec::b64_decode(s).map_err(err)?,
                };
                Value::Bytes(data.into())
            }
            Kind::String => Value::String(match v {
                Json::Str(s) => s.clone(),
                _ => return Err(bad("expected a string")),
            }),
            Kind::Bool => Value::Bool(match v {
                Json::Bool(b) => *b,
                Json::Int(i) => *i != 0,
                _ => return Err(bad("expected a boolean")),
            }),
            Kind::Enum(e) => match v {
                Json::Str(s) => Value::EnumNumber(
                    e.get_value_by_name(s)
                        .ok_or_else(|| bad("unknown enum value"))?
                        .number(),
                ),
                Json::Int(i) => Value::EnumNumber(i32::try_from(*i).map_err(|_| range("enum"))?),
                _ => return Err(bad("expected an enum name")),
            },
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                Value::I32(i32::try_from(int(v)?).map_err(|_| range("int32"))?)
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                Value::I64(i64::try_from(int(v)?).map_err(|_| range("int64"))?)
            }
            Kind::Uint32 | Kind::Fixed32 => {
                Value::U32(u32::try_from(int(v)?).map_err(|_| range("uint32"))?)
            }
            Kind::Uint64 | Kind::Fixed64 => {
                Value::U64(u64::try_from(int(v)?).map_err(|_| range("uint64"))?)
            }
            Kind::Float | Kind::Double => {
                let x = match v {
                    Json::Float(x) => *x,
                    Json::Int(i) => *i as f64,
                    _ => return Err(bad("expected a number")),
                };
                if matches!(f.kind(), Kind::Float) {
                    Value::F32(x as f32)
                } else {
                    Value::F64(x)
                }
            }
        })
    }
}

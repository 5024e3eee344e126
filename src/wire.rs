//! The JSON shapes of Wix's OAuth answers: decoded like a tolerant client,
//! so that a harmless format change at Wix is not an outage, and decided on
//! like a strict one.
//!
//! Token Info, field by field:
//!
//! | field | accepted | anything else |
//! |---|---|---|
//! | `active` | `true`/`false`, or a string `"true"`/`"false"` in any case | malformed |
//! | `exp` | an integer or decimal number, or a string holding one; floored to seconds | malformed |
//! | `subjectType` | any string, mapped by value | [`SubjectType::Unknown`] |
//! | `subjectId`, `clientId`, `instanceId` | a string | malformed |
//! | `siteId` | a string | ignored |
//! | `vendorProductId` | a string (empty: the free plan) or `null` | [`Plan::Unreadable`], which plan policies refuse |
//! | `iat`, `accountId`, unknown fields | anything | ignored |
//!
//! `null` is the same as an absent field (proto3 JSON omits defaults). A
//! UTF-8 byte-order mark before the body is skipped. The body must be JSON;
//! a number beyond `f64` (`1e400`) fails only a decision field.
//!
//! **Duplicate keys.** A field a decision reads (`active`, `exp`,
//! `subjectType`, `subjectId`, `clientId`, `instanceId`) given twice makes
//! the answer malformed: JSON parsers disagree on which copy wins, and a
//! security decision must not depend on that. `vendorProductId` given twice
//! is [`Plan::Unreadable`]. Other fields may repeat.
//!
//! Create Access Token: `access_token` must be a string; `expires_in` is
//! read like `exp` and is `None` when missing, unreadable or Duration-style
//! (`"14400s"`); the caller then assumes a conservative lifetime.

use std::{borrow::Cow, fmt};

use serde::{
    Deserialize, Deserializer,
    de::{self, IgnoredAny, MapAccess},
};
use serde_json::value::RawValue;

use crate::caller::{Plan, SubjectType};

/// `POST /oauth2/token-info`'s 200 body, as far as a decision needs it.
#[derive(Debug, Default)]
pub(crate) struct TokenInfo {
    pub(crate) active: Option<bool>,
    pub(crate) subject_type: Option<SubjectType>,
    pub(crate) subject_id: Option<String>,
    pub(crate) exp: Option<i64>,
    pub(crate) client_id: Option<String>,
    pub(crate) site_id: Option<String>,
    pub(crate) instance_id: Option<String>,
    pub(crate) plan: Plan,
}

/// `POST /oauth2/token`'s 200 body.
#[derive(Deserialize)]
pub(crate) struct AccessTokenGrant {
    pub(crate) access_token: String,
    #[serde(default, deserialize_with = "lenient_seconds")]
    pub(crate) expires_in: Option<i64>,
}

// Never print the token, even in our own Debug output.
impl fmt::Debug for AccessTokenGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessTokenGrant")
            .field("access_token", &"[REDACTED]")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Decode a Wix answer, which is always a JSON object (serde alone would
/// also take an array for a struct), after an optional UTF-8 BOM.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    if !body.trim_ascii_start().starts_with(b"{") {
        return None;
    }
    serde_json::from_slice(body).ok()
}

impl<'de> Deserialize<'de> for TokenInfo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(TokenInfoVisitor)
    }
}

struct TokenInfoVisitor;

impl<'de> de::Visitor<'de> for TokenInfoVisitor {
    type Value = TokenInfo;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Token Info object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TokenInfo, A::Error> {
        let mut info = TokenInfo::default();
        // One bit per decision field already read.
        let mut seen = 0u8;
        let mut first = |bit: u8, name: &'static str| {
            if seen & bit != 0 {
                return Err(de::Error::duplicate_field(name));
            }
            seen |= bit;
            Ok(())
        };
        let mut plan_seen = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match &*key {
                "active" => {
                    first(1, "active")?;
                    info.active = map.next_value::<FlexibleBool>()?.0;
                }
                "exp" => {
                    first(2, "exp")?;
                    info.exp = map.next_value::<FlexibleSeconds>()?.0;
                }
                "subjectType" => {
                    first(4, "subjectType")?;
                    info.subject_type = Some(map.next_value::<AnySubjectType>()?.0);
                }
                "subjectId" => {
                    first(8, "subjectId")?;
                    info.subject_id = map.next_value()?;
                }
                "clientId" => {
                    first(16, "clientId")?;
                    info.client_id = map.next_value()?;
                }
                "instanceId" => {
                    first(32, "instanceId")?;
                    info.instance_id = map.next_value()?;
                }
                "siteId" => info.site_id = map.next_value::<StringOrNothing>()?.0,
                "vendorProductId" => {
                    let plan = map.next_value::<PlanField>()?.0;
                    info.plan = if plan_seen { Plan::Unreadable } else { plan };
                    plan_seen = true;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(info)
    }
}

/// `true`/`false`, or a string holding one in any case; `null` is absent.
struct FlexibleBool(Option<bool>);

impl<'de> Deserialize<'de> for FlexibleBool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = FlexibleBool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a boolean, \"true\" or \"false\"")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(FlexibleBool(Some(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v.eq_ignore_ascii_case("true") {
                    Ok(FlexibleBool(Some(true)))
                } else if v.eq_ignore_ascii_case("false") {
                    Ok(FlexibleBool(Some(false)))
                } else {
                    Err(E::custom("not a boolean string"))
                }
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(FlexibleBool(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// Whole seconds: an integer or decimal number, or a string holding one,
/// floored; `null` is absent; anything else is an error.
struct FlexibleSeconds(Option<i64>);

impl<'de> Deserialize<'de> for FlexibleSeconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = FlexibleSeconds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds, or a string holding one")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(FlexibleSeconds(Some(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v)
                    .map(|v| FlexibleSeconds(Some(v)))
                    .map_err(|_| E::custom("seconds out of range"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                floor_seconds(v)
                    .map(|v| FlexibleSeconds(Some(v)))
                    .ok_or_else(|| E::custom("seconds out of range"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                seconds_from_str(v)
                    .map(|v| FlexibleSeconds(Some(v)))
                    .ok_or_else(|| E::custom("not a number of seconds"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(FlexibleSeconds(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// A number of seconds read like `exp`, or `None` for anything else
/// (never an error).
fn lenient_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let raw = Box::<RawValue>::deserialize(d)?;
    Ok(match serde_json::from_str(raw.get()).unwrap_or_default() {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(floor_seconds)),
        serde_json::Value::String(s) => seconds_from_str(&s),
        _ => None,
    })
}

/// A string; any other JSON value is `None`. Never an error: the value is
/// first taken raw (which only checks that it is JSON), so not even a
/// number beyond `f64` fails it.
struct StringOrNothing(Option<String>);

impl<'de> Deserialize<'de> for StringOrNothing {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        Ok(StringOrNothing(serde_json::from_str(raw.get()).ok()))
    }
}

/// `vendorProductId`: a string is a paid plan (an empty one the free plan),
/// `null` the free plan, anything else [`Plan::Unreadable`]. Never an error.
struct PlanField(Plan);

impl<'de> Deserialize<'de> for PlanField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        Ok(PlanField(
            match serde_json::from_str::<Option<String>>(raw.get()) {
                Ok(Some(id)) => Plan::paid(id),
                Ok(None) => Plan::Free,
                Err(_) => Plan::Unreadable,
            },
        ))
    }
}

/// Any string mapped by value (escapes decoded); any other value, `null`
/// included, is [`SubjectType::Unknown`].
struct AnySubjectType(SubjectType);

impl<'de> Deserialize<'de> for AnySubjectType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(AnySubjectType(match StringOrNothing::deserialize(d)?.0 {
            Some(s) => SubjectType::from_wix(&s),
            None => SubjectType::Unknown,
        }))
    }
}

/// `v` floored to whole seconds, if finite and within `i64`.
fn floor_seconds(v: f64) -> Option<i64> {
    const LIMIT: f64 = 9.0e18;
    let floored = v.floor();
    // The range check makes the cast exact (no saturation).
    (floored.is_finite() && floored.abs() < LIMIT).then_some(floored as i64)
}

/// A decimal number written as JSON writes numbers (`14400`, `1795872125.0`,
/// `1.7e9`), floored; not `inf`, `NaN`, hex or a unit suffix.
fn seconds_from_str(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(v) = s.parse::<i64>() {
        return Some(v);
    }
    let numeric = s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    if !numeric {
        return None;
    }
    s.parse::<f64>().ok().and_then(floor_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(body: &str) -> Option<TokenInfo> {
        decode(body.as_bytes())
    }

    #[test]
    fn token_info_accepts_the_doc_example_with_strings() {
        let body = br#"{"active":"true","subjectType":"APP","subjectId":"a8098c1a","exp":"1715096067","iat":"1715081667","clientId":"7f58c233","siteId":"65c5e710","instanceId":"1ec48d1e"}"#;
        let info: TokenInfo = serde_json::from_slice(body).unwrap();
        assert_eq!(info.active, Some(true));
        assert_eq!(info.exp, Some(1_715_096_067));
        assert_eq!(info.subject_type, Some(SubjectType::App));
        assert_eq!(info.instance_id.as_deref(), Some("1ec48d1e"));
        assert_eq!(info.site_id.as_deref(), Some("65c5e710"));
    }

    #[test]
    fn token_info_accepts_native_types_and_unknown_subjects() {
        let body = br#"{"active":false,"subjectType":"ROBOT","exp":1715096067,"iat":1.715081667e9,"accountId":"acc","extra":[1,2]}"#;
        let info: TokenInfo = serde_json::from_slice(body).unwrap();
        assert_eq!(info.active, Some(false));
        assert_eq!(info.subject_type, Some(SubjectType::Unknown));
        assert_eq!(info.exp, Some(1_715_096_067));
    }

    #[test]
    fn token_info_accepts_nulls_and_missing_fields() {
        let info: TokenInfo = serde_json::from_slice(br#"{"active":null,"exp":null}"#).unwrap();
        assert_eq!(info.active, None);
        assert_eq!(info.exp, None);
        let info: TokenInfo = serde_json::from_slice(b"{}").unwrap();
        assert_eq!(info.active, None);
    }

    #[test]
    fn the_plan_is_read_leniently_and_an_odd_one_is_unreadable() {
        let plan = |field: &str| info(&format!("{{{field}}}")).expect("never fails").plan;
        assert_eq!(
            plan(r#""vendorProductId":"premium""#),
            Plan::paid("premium")
        );
        assert_eq!(plan(r#""vendorProductId":"""#), Plan::Free, "proto3 empty");
        assert_eq!(plan(r#""vendorProductId":null"#), Plan::Free);
        assert_eq!(plan(r#""other":1"#), Plan::Free, "absent");
        for odd in ["42", "{}", "[\"premium\"]", "true", "1e400"] {
            assert_eq!(
                plan(&format!(r#""vendorProductId":{odd}"#)),
                Plan::Unreadable,
                "{odd}"
            );
        }
        assert_eq!(
            plan(r#""vendorProductId":"basic","vendorProductId":"premium""#),
            Plan::Unreadable,
            "given twice"
        );
    }

    #[test]
    fn fields_no_decision_reads_never_fail_an_answer() {
        for odd in [
            r#""2026-11-27T10:00:00Z""#,
            "{}",
            "[1,2]",
            "true",
            "-1e400",
            r#""x""#,
            "1.5",
        ] {
            for field in ["iat", "accountId", "vendorProductId", "siteId", "whatever"] {
                let body = format!(r#"{{"active":true,"{field}":{odd},"exp":"1795872125"}}"#);
                let info = info(&body).unwrap_or_else(|| panic!("refused {body}"));
                assert_eq!(info.exp, Some(1_795_872_125), "{body}");
            }
        }
        // ...and may repeat.
        let info = info(r#"{"iat":1,"iat":"x","siteId":"a","siteId":2}"#).unwrap();
        assert_eq!(info.site_id, None);
    }

    #[test]
    fn subject_type_maps_any_string_by_value_and_anything_else_to_unknown() {
        for (value, want) in [
            (r#""MEMBER""#, SubjectType::Member),
            (r#""MEMB\u0045R""#, SubjectType::Member),
            (r#""\u0056ISITOR""#, SubjectType::Visitor),
            (r#""member""#, SubjectType::Unknown),
            ("7", SubjectType::Unknown),
            ("null", SubjectType::Unknown),
            ("{}", SubjectType::Unknown),
            ("[\"USER\"]", SubjectType::Unknown),
        ] {
            let info = info(&format!(r#"{{"subjectType":{value}}}"#)).unwrap();
            assert_eq!(info.subject_type, Some(want), "{value}");
        }
    }

    #[test]
    fn active_is_a_boolean_or_a_boolean_string_in_any_case() {
        for (value, want) in [
            ("true", Some(true)),
            (r#""TRUE""#, Some(true)),
            (r#""True""#, Some(true)),
            (r#""fAlSe""#, Some(false)),
            ("null", None),
        ] {
            let info = info(&format!(r#"{{"active":{value}}}"#)).unwrap();
            assert_eq!(info.active, want, "{value}");
        }
        for bad in ["1", r#""yes""#, r#""""#, "{}", "[]", r#"" true""#] {
            assert!(info(&format!(r#"{{"active":{bad}}}"#)).is_none(), "{bad}");
        }
    }

    #[test]
    fn exp_is_any_number_or_numeric_string_floored() {
        for (value, want) in [
            ("1795872125", 1_795_872_125),
            ("1795872125.5", 1_795_872_125),
            ("1.795872125e9", 1_795_872_125),
            (r#""1795872125""#, 1_795_872_125),
            (r#""1795872125.0""#, 1_795_872_125),
            (r#"" 1795872125.9 ""#, 1_795_872_125),
            ("-1.5", -2),
        ] {
            let info = info(&format!(r#"{{"exp":{value}}}"#)).unwrap();
            assert_eq!(info.exp, Some(want), "{value}");
        }
        for bad in [
            r#""soon""#,
            r#""14400s""#,
            r#""inf""#,
            r#""NaN""#,
            r#""0x10""#,
            r#""""#,
            "18446744073709551615",
            "-1e400",
            "1e300",
            "true",
            "{}",
        ] {
            assert!(info(&format!(r#"{{"exp":{bad}}}"#)).is_none(), "{bad}");
        }
    }

    #[test]
    fn decision_fields_of_the_wrong_type_make_the_answer_malformed() {
        for body in [
            r#"{"instanceId":{}}"#,
            r#"{"clientId":7}"#,
            r#"{"subjectId":["m"]}"#,
            "[]",
            "not json",
        ] {
            assert!(info(body).is_none(), "{body}");
        }
    }

    #[test]
    fn a_bom_before_the_body_is_skipped() {
        let info = decode::<TokenInfo>(b"\xEF\xBB\xBF{\"active\":true}").unwrap();
        assert_eq!(info.active, Some(true));
        assert!(decode::<TokenInfo>(b"\xEF\xBB{\"active\":true}").is_none());
    }

    #[test]
    fn a_decision_field_given_twice_is_malformed() {
        for field in [
            r#""active":true"#,
            r#""exp":1"#,
            r#""subjectType":"USER""#,
            r#""subjectId":"a""#,
            r#""clientId":"a""#,
            r#""instanceId":"a""#,
        ] {
            let body = format!("{{{field},{field}}}");
            assert!(info(&body).is_none(), "{body}");
        }
        // Escaped spellings of the same key are the same key.
        assert!(info(r#"{"active":true,"activ\u0065":false}"#).is_none());
    }

    #[test]
    fn grant_reads_lenient_lifetimes_and_hides_the_token() {
        let g: AccessTokenGrant = serde_json::from_slice(
            br#"{"access_token":"secret-x","token_type":"Bearer","expires_in":"14400"}"#,
        )
        .unwrap();
        assert_eq!(g.expires_in, Some(14_400));
        assert!(!format!("{g:?}").contains("secret-x"));
        for (value, want) in [
            ("14400", Some(14_400)),
            ("14400.7", Some(14_400)),
            (r#""14400s""#, None),
            (r#""soon""#, None),
            ("null", None),
            ("{}", None),
            ("9223372036854775807", Some(i64::MAX)),
            ("1e300", None),
            ("1e400", None),
        ] {
            let body = format!(r#"{{"access_token":"t","expires_in":{value}}}"#);
            let g: AccessTokenGrant = decode(body.as_bytes()).unwrap();
            assert_eq!(g.expires_in, want, "{value}");
        }
        let g: AccessTokenGrant = decode(br#"{"access_token":"t"}"#).unwrap();
        assert_eq!(g.expires_in, None);
        assert!(decode::<AccessTokenGrant>(br#"{"expires_in":1}"#).is_none());
        assert!(decode::<AccessTokenGrant>(br#"{"access_token":7}"#).is_none());
        assert!(decode::<AccessTokenGrant>(br#"["x",1]"#).is_none());
    }
}

//! The JSON shapes of Wix's OAuth answers, decoded leniently where Wix's
//! own sources disagree (see `wix-api.md`): `active`, `exp` and `iat` may be
//! JSON strings or native values, every other field may be absent, and an
//! unknown `subjectType` is [`SubjectType::Unknown`].

use std::fmt;

use serde::{Deserialize, Deserializer, de};

use crate::caller::SubjectType;

/// `POST /oauth2/token-info`'s 200 body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenInfo {
    #[serde(default, deserialize_with = "flexible_bool")]
    pub(crate) active: Option<bool>,
    #[serde(default, deserialize_with = "subject_type")]
    pub(crate) subject_type: Option<SubjectType>,
    #[serde(default)]
    pub(crate) subject_id: Option<String>,
    #[serde(default, deserialize_with = "flexible_int")]
    pub(crate) exp: Option<i64>,
    #[serde(default, deserialize_with = "flexible_int")]
    #[allow(dead_code)] // decoded so a wrong type is caught; not used yet
    pub(crate) iat: Option<i64>,
    #[serde(default)]
    pub(crate) client_id: Option<String>,
    #[serde(default)]
    #[allow(dead_code)] // documented by Wix, absent from the SDK: optional
    pub(crate) account_id: Option<String>,
    #[serde(default)]
    pub(crate) site_id: Option<String>,
    #[serde(default)]
    pub(crate) instance_id: Option<String>,
}

/// `POST /oauth2/token`'s 200 body.
#[derive(Deserialize)]
pub(crate) struct AccessTokenGrant {
    pub(crate) access_token: String,
    #[serde(deserialize_with = "flexible_int")]
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
/// also take an array for a struct).
pub(crate) fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
    if !body.trim_ascii_start().starts_with(b"{") {
        return None;
    }
    serde_json::from_slice(body).ok()
}

fn subject_type<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SubjectType>, D::Error> {
    Ok(Option::<&str>::deserialize(d)?.map(SubjectType::from_wix))
}

fn flexible_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    struct V;
    impl<'de> de::Visitor<'de> for V {
        type Value = Option<bool>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a boolean, \"true\" or \"false\"")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            match v {
                "true" => Ok(Some(true)),
                "false" => Ok(Some(false)),
                _ => Err(E::custom("not a boolean string")),
            }
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

fn flexible_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    struct V;
    impl<'de> de::Visitor<'de> for V {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer or a string holding one")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            i64::try_from(v)
                .map(Some)
                .map_err(|_| E::custom("integer out of range"))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if v.fract() == 0.0 && v.abs() < 9.0e15 {
                Ok(Some(v as i64))
            } else {
                Err(E::custom("not an integer"))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            v.trim()
                .parse()
                .map(Some)
                .map_err(|_| E::custom("not an integer string"))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_info_accepts_the_doc_example_with_strings() {
        let body = br#"{"active":"true","subjectType":"APP","subjectId":"a8098c1a","exp":"1715096067","iat":"1715081667","clientId":"7f58c233","siteId":"65c5e710","instanceId":"1ec48d1e"}"#;
        let info: TokenInfo = serde_json::from_slice(body).unwrap();
        assert_eq!(info.active, Some(true));
        assert_eq!(info.exp, Some(1_715_096_067));
        assert_eq!(info.iat, Some(1_715_081_667));
        assert_eq!(info.subject_type, Some(SubjectType::App));
        assert_eq!(info.instance_id.as_deref(), Some("1ec48d1e"));
        assert_eq!(info.account_id, None);
    }

    #[test]
    fn token_info_accepts_native_types_and_unknown_subjects() {
        let body = br#"{"active":false,"subjectType":"ROBOT","exp":1715096067,"iat":1.715081667e9,"accountId":"acc","extra":[1,2]}"#;
        let info: TokenInfo = serde_json::from_slice(body).unwrap();
        assert_eq!(info.active, Some(false));
        assert_eq!(info.subject_type, Some(SubjectType::Unknown));
        assert_eq!(info.exp, Some(1_715_096_067));
        assert_eq!(info.account_id.as_deref(), Some("acc"));
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
    fn token_info_refuses_wrong_types() {
        for body in [
            &br#"{"active":"yes"}"#[..],
            br#"{"exp":"soon"}"#,
            br#"{"exp":1.5}"#,
            br#"{"exp":18446744073709551615}"#,
            br#"{"subjectType":7}"#,
            br#"{"instanceId":{}}"#,
            b"[]",
            b"not json",
        ] {
            assert!(
                decode::<TokenInfo>(body).is_none(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn grant_reads_both_forms_and_hides_the_token() {
        let g: AccessTokenGrant = serde_json::from_slice(
            br#"{"access_token":"secret-x","token_type":"Bearer","expires_in":"14400"}"#,
        )
        .unwrap();
        assert_eq!(g.expires_in, Some(14_400));
        assert!(!format!("{g:?}").contains("secret-x"));
        assert!(decode::<AccessTokenGrant>(br#"{"expires_in":1}"#).is_none());
        assert!(decode::<AccessTokenGrant>(br#"["x",1]"#).is_none());
    }
}

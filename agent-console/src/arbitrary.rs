//! Generators shared by the property tests of the parsers (issue 21).

use proptest::prelude::*;
use serde_json::Value;

/// Field names the webhook and FHIR readers look for, so that generated
/// JSON meets the parsers' branches and not only their first check.
const KEYS: &[&str] = &[
    "object",
    "entry",
    "changes",
    "value",
    "metadata",
    "phone_number_id",
    "contacts",
    "wa_id",
    "profile",
    "name",
    "messages",
    "statuses",
    "from",
    "id",
    "timestamp",
    "type",
    "text",
    "body",
    "status",
    "errors",
    "code",
    "title",
    "biz_opaque_callback_data",
    "resourceType",
    "identifier",
    "system",
    "telecom",
    "given",
    "family",
    "gender",
    "birthDate",
    "address",
    "district",
    "position",
    "latitude",
    "longitude",
    "hoursOfOperation",
    "allDay",
    "daysOfWeek",
    "openingTime",
    "closingTime",
];

/// Strings that are some field's expected value.
const WORDS: &[&str] = &[
    "whatsapp_business_account",
    "P",
    "text",
    "image",
    "1749416383",
    "read",
    "failed",
    "Patient",
    "Location",
    "phone",
    "email",
    "male",
    "female",
    "https://healthid.ndhm.gov.in",
    "urn:careline:delhi-ehealth-card",
    "urn:careline:hims-patient-id",
    "91-1234-5678-9012",
    "9810012345",
    "DL-EHC-100234",
    "1990-02-30",
    "08:00:00",
];

/// Any JSON value: nested arrays and objects (keys mostly the parsers'
/// own), numbers of every kind, and strings both random and meaningful.
pub(crate) fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,16}".prop_map(Value::String),
        proptest::sample::select(WORDS).prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        let key = prop_oneof![3 => proptest::sample::select(KEYS).prop_map(str::to_owned), 1 => "\\PC{0,8}"];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(key, inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

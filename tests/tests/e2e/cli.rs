//! The `careline` command-line tools, run as a user would.

use std::process::Command;

use serde_json::Value;
use tests::{careline_bin, repo_root};

fn careline(args: &[&str]) -> std::process::Output {
    Command::new(careline_bin()).args(args).output().expect("run careline")
}

#[test]
fn staffing_meets_the_published_erlang_c_check() {
    let out = careline(&[
        "staffing",
        "--calls-per-interval",
        "100",
        "--interval-minutes",
        "30",
        "--aht-seconds",
        "180",
        "--target-seconds",
        "20",
        "--service-level",
        "0.8",
        "--shrinkage",
        "0.3",
        "--max-occupancy",
        "0.85",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["agents"], 14);
    assert_eq!(plan["staff_with_shrinkage"], 20);
    let close = |k: &str, v: f64| (plan[k].as_f64().unwrap() - v).abs() < 0.0005;
    assert!(close("service_level", 0.888) && close("p_wait", 0.174) && close("occupancy", 0.714), "{plan}");
    assert!(plan["asa_seconds"].as_f64().unwrap() > 0.0);
}

#[test]
fn staffing_plans_a_day_and_flags_intervals_beyond_the_seats() {
    let profile = repo_root().join("routing/profiles/helpline-day.csv");
    let out = careline(&[
        "staffing",
        "--forecast",
        profile.to_str().unwrap(),
        "--aht-seconds",
        "240",
        "--service-level",
        "0.8",
        "--shrinkage",
        "0.3",
        "--max-occupancy",
        "0.85",
        "--seats",
        "20",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let day: Value = serde_json::from_slice(&out.stdout).unwrap();
    let intervals = day["intervals"].as_array().unwrap();
    assert_eq!(intervals.len(), 48);
    let over: Vec<&str> =
        intervals.iter().filter(|i| i["over_seats"] == true).map(|i| i["start"].as_str().unwrap()).collect();
    assert!(over.contains(&"10:00") && !over.contains(&"03:00"), "{over:?}");
}

#[test]
fn staffing_by_erlang_a_allows_for_callers_who_hang_up() {
    let args = ["staffing", "--calls-per-interval", "100", "--aht-seconds", "180", "--max-occupancy", "0.85", "--json"];
    let by = |extra: &[&str]| -> Value {
        let out = careline(&[&args[..], extra].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let c = by(&[]);
    let a = by(&["--patience-seconds", "60"]);
    assert_eq!(c["model"], "erlang_c");
    assert_eq!(a["model"], "erlang_a");
    assert!(a["agents"].as_u64() <= c["agents"].as_u64(), "{a} vs {c}");
    assert!(a["p_abandon"].as_f64().unwrap() > 0.0 && a["service_level"].as_f64().unwrap() >= 0.8, "{a}");
    let bad = careline(&[&args[..], &["--patience-seconds", "0"]].concat());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("patience_seconds: must be more than zero"));
}

#[test]
fn staffing_plans_seats_per_shift_for_the_day() {
    let profile = repo_root().join("routing/profiles/helpline-day.csv");
    let out = careline(&[
        "staffing",
        "--forecast",
        profile.to_str().unwrap(),
        "--aht-seconds",
        "240",
        "--shrinkage",
        "0.3",
        "--max-occupancy",
        "0.85",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for shift in ["morning  06:00–14:00", "evening  14:00–22:00", "peak     10:00–18:00"] {
        assert!(text.contains(shift), "{text}");
    }
    assert!(text.contains("night: doctors"), "{text}");
}

#[test]
fn staffing_refuses_bad_input_with_the_reason() {
    let out = careline(&["staffing", "--calls-per-interval", "100", "--aht-seconds", "180", "--service-level", "80"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("service_level: must be between 0 and 1"));
}

#[test]
fn simulate_runs_a_day_through_the_engine_and_measures_the_estimate() {
    let profile = repo_root().join("routing/profiles/helpline-day.csv");
    let run = |seed: &str| careline(&["simulate", "--profile", profile.to_str().unwrap(), "--seed", seed, "--json"]);
    let out = run("5");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["intervals"].as_array().unwrap().len(), 48);
    assert!(report["offered"].as_u64().unwrap() > 2000);
    assert!(report["service_level"].as_f64().unwrap() > 0.5);
    assert!(report["estimate_mae_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(out.stdout, run("5").stdout, "a seed gives the same day");
    let bad = careline(&["simulate", "--profile", profile.to_str().unwrap(), "--operators", "30,30,5"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("40 regular seats"));
}

#[test]
fn hims_imports_locations_services_and_patients_from_a_fhir_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hims.db");
    let bundle = serde_json::json!({
        "resourceType": "Bundle", "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Location", "id": "gtb", "name": "Guru Teg Bahadur Hospital",
              "identifier": [{"system": "urn:careline:facility", "value": "DL-H-GTB"}],
              "type": [{"text": "hospital"}], "address": {"text": "Dilshad Garden", "district": "Shahdara"},
              "telecom": [{"system": "phone", "value": "011-22586262"}],
              "hoursOfOperation": [{"allDay": true}]}},
            {"resource": {"resourceType": "HealthcareService", "name": "dialysis", "location": [{"reference": "Location/gtb"}]}},
            {"resource": {"resourceType": "Patient", "id": "p-77", "name": [{"given": ["Kamla"], "family": "Devi"}],
              "gender": "female", "birthDate": "1975-08-02",
              "identifier": [{"system": "https://healthid.ndhm.gov.in", "value": "91-1111-2222-3333"}],
              "telecom": [{"system": "phone", "value": "9810000009"}]}},
            {"resource": {"resourceType": "Organization", "name": "Delhi Health Department"}}
        ]
    });
    let file = dir.path().join("bundle.json");
    std::fs::write(&file, bundle.to_string()).unwrap();
    let run = || careline(&["hims", "import-fhir", file.to_str().unwrap(), "--database-url", db.to_str().unwrap()]);
    let out = run();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("imported 1 facilities and 1 patients (2 other resources skipped)"), "{said}");
    // Importing again updates the facility and does not duplicate the patient.
    let again = String::from_utf8_lossy(&run().stdout).to_string();
    assert!(again.contains("1 facilities and 0 patients"), "{again}");
    // A patient with a malformed ABHA number refuses the whole bundle, naming the entry.
    let bad = serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "name": [{"text": "X"}], "identifier": [{"system": "https://healthid.ndhm.gov.in", "value": "12"}]}}]});
    std::fs::write(&file, bad.to_string()).unwrap();
    let out = run();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bundle line 0"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Runs `agent-console/scripts/prereqs.sh ARGS` in a private mount namespace
/// in which every copy of each tool in `hide` on PATH is covered by an empty,
/// non-executable file (a PATH change could not hide a tool in /usr/bin).
fn prereqs_without(hide: &[&str], args: &str) -> std::process::Output {
    // One file per call: the tests run in parallel threads of one process,
    // and one removing a shared file under the other's mount failed CI.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let empty = std::env::temp_dir().join(format!("careline-hidden-tool-{}-{n}", std::process::id()));
    std::fs::write(&empty, b"").unwrap();
    let script = format!(
        "set -e; for t in {tools}; do for p in $(which -a $t); do mount --bind {empty} \"$(readlink -f \"$p\")\"; done; done; \
         exec bash agent-console/scripts/prereqs.sh {args}",
        tools = hide.join(" "),
        empty = empty.display(),
    );
    let out = Command::new("unshare")
        .args(["-m", "bash", "-c", &script])
        .current_dir(repo_root())
        .output()
        .expect("unshare (util-linux) runs; the tests run as root");
    std::fs::remove_file(&empty).ok();
    out
}

#[test]
fn the_prerequisite_check_names_each_missing_tool_and_how_to_install_it() {
    let out = prereqs_without(&["cmake", "c++", "make"], "--check");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    for name in ["missing: cmake", "missing: C++ compiler", "missing: make"] {
        assert!(said.contains(name), "{name} not reported:\n{said}");
    }
    assert!(!said.contains("missing: C compiler"), "cc is there:\n{said}");
    assert!(said.contains("apt-get install -y g++ make cmake"), "{said}");
    assert!(said.contains("dnf install -y gcc-c++ make cmake"), "{said}");
    assert!(said.contains("brew install cmake"), "{said}");
}

#[test]
fn the_prerequisite_check_passes_without_python_but_says_captions_need_it() {
    let out = prereqs_without(&["python3"], "--check");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("optional tools are missing") && said.contains("captions"), "{said}");
    assert!(said.contains("apt-get install -y python3-pip"), "{said}");
}

#[test]
fn the_prerequisite_check_is_quiet_when_everything_is_there() {
    let out = prereqs_without(&[], "--check");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

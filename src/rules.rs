//! Rules as files: DetectionRule YAML (one or many documents), bare `.eql` queries, and Elastic detection-rules
//! TOML, all read into `DetectionRule`s; and the built-in default rule.

use std::path::{Path, PathBuf};

use kube::api::ObjectMeta;
use serde::Deserialize;

use crate::crd::{
    DetectionRule, DetectionRuleSpec, Language, Severity, Technique, Threat, ThreatEntry,
};

/// The default rule, Elastic's "Kubernetes Anonymous User Create/Update/Patch Pods Request" (Elastic License v2),
/// exactly as `examples/default-rule.yaml` ships it.
pub const DEFAULT_RULE_YAML: &str = include_str!("../examples/default-rule.yaml");
pub const DEFAULT_RULE_NAME: &str = "anonymous-pod-write";

#[derive(Debug, thiserror::Error)]
pub enum RuleFileError {
    #[error("{path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a DetectionRule: {message}")]
    InvalidYaml { path: PathBuf, message: String },
    #[error("{path}: not an Elastic detection rule: {message}")]
    InvalidToml { path: PathBuf, message: String },
    #[error("{path}: unknown rule file type (expected .yaml, .yml, .eql or .toml)")]
    UnknownType { path: PathBuf },
    #[error("{path}: language `{language}` is not supported yet (vigil evaluates eql)")]
    UnsupportedLanguage { path: PathBuf, language: String },
}

impl RuleFileError {
    /// Whether the file could not be read at all (exit code 3) rather than read and found invalid (exit code 1).
    pub fn is_unreadable(&self) -> bool {
        matches!(self, RuleFileError::Unreadable { .. })
    }
}

pub fn default_rule() -> Result<DetectionRule, RuleFileError> {
    let mut rules = parse_yaml(Path::new("examples/default-rule.yaml"), DEFAULT_RULE_YAML)?;
    rules.pop().ok_or_else(|| RuleFileError::InvalidYaml {
        path: PathBuf::from("examples/default-rule.yaml"),
        message: "no document".to_string(),
    })
}

/// DetectionRule YAML files, or directories of them (`*.yaml`, `*.yml`, sorted by name).
pub fn load_rule_paths(paths: &[PathBuf]) -> Result<Vec<DetectionRule>, RuleFileError> {
    let mut rules = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|source| RuleFileError::Unreadable {
                path: path.clone(),
                source,
            })?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
                .collect();
            files.sort();
            for file in files {
                rules.extend(parse_yaml(&file, &read(&file)?)?);
            }
        } else {
            rules.extend(parse_yaml(path, &read(path)?)?);
        }
    }
    Ok(rules)
}

/// Any rule file `vigil check` accepts, by extension.
pub fn load_rule_file(path: &Path) -> Result<Vec<DetectionRule>, RuleFileError> {
    let text = read(path)?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml") => parse_yaml(path, &text),
        Some("eql") => Ok(vec![rule_from_query(path, text)]),
        Some("toml") => parse_elastic_toml(path, &text).map(|rule| vec![rule]),
        _ => Err(RuleFileError::UnknownType {
            path: path.to_path_buf(),
        }),
    }
}

fn read(path: &Path) -> Result<String, RuleFileError> {
    std::fs::read_to_string(path).map_err(|source| RuleFileError::Unreadable {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_yaml(path: &Path, text: &str) -> Result<Vec<DetectionRule>, RuleFileError> {
    let invalid = |message: String| RuleFileError::InvalidYaml {
        path: path.to_path_buf(),
        message,
    };
    let mut rules = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value =
            serde_yaml_ng::Value::deserialize(document).map_err(|e| invalid(e.to_string()))?;
        if value.is_null() {
            continue; // an empty document, e.g. after a trailing `---`
        }
        let rule: DetectionRule =
            serde_yaml_ng::from_value(value).map_err(|e| invalid(e.to_string()))?;
        if rule.metadata.name.as_deref().is_none_or(str::is_empty) {
            return Err(invalid("metadata.name is missing".to_string()));
        }
        rules.push(rule);
    }
    Ok(rules)
}

fn rule_from_query(path: &Path, query: String) -> DetectionRule {
    DetectionRule {
        metadata: ObjectMeta {
            name: Some(name_from_path(path)),
            ..ObjectMeta::default()
        },
        spec: DetectionRuleSpec {
            rule_id: None,
            display_name: None,
            description: None,
            language: Language::Eql,
            query,
            severity: Severity::default(),
            risk_score: None,
            enabled: true,
            tags: Vec::new(),
            threat: Vec::new(),
            references: Vec::new(),
            false_positives: Vec::new(),
            author: Vec::new(),
            license: None,
            suppression: None,
        },
        status: None,
    }
}

fn name_from_path(path: &Path) -> String {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("rule");
    stem.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .trim_matches('-')
        .to_string()
}

/// The `[rule]` table of an Elastic detection-rules TOML file (the fields vigil maps).
#[derive(Deserialize)]
struct ElasticRuleFile {
    rule: ElasticRule,
}

#[derive(Deserialize)]
struct ElasticRule {
    name: String,
    language: String,
    query: Option<String>,
    rule_id: Option<String>,
    description: Option<String>,
    severity: Option<Severity>,
    risk_score: Option<u8>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    threat: Vec<ElasticThreat>,
    #[serde(default)]
    references: Vec<String>,
    #[serde(default)]
    false_positives: Vec<String>,
    #[serde(default)]
    author: Vec<String>,
    license: Option<String>,
}

#[derive(Deserialize)]
struct ElasticThreat {
    framework: String,
    tactic: ElasticThreatEntry,
    #[serde(default)]
    technique: Vec<ElasticTechnique>,
}

#[derive(Deserialize)]
struct ElasticTechnique {
    id: String,
    name: String,
    reference: Option<String>,
    #[serde(default)]
    subtechnique: Vec<ElasticThreatEntry>,
}

#[derive(Deserialize)]
struct ElasticThreatEntry {
    id: String,
    name: String,
    reference: Option<String>,
}

impl From<ElasticThreatEntry> for ThreatEntry {
    fn from(entry: ElasticThreatEntry) -> Self {
        ThreatEntry {
            id: entry.id,
            name: entry.name,
            reference: entry.reference,
        }
    }
}

fn parse_elastic_toml(path: &Path, text: &str) -> Result<DetectionRule, RuleFileError> {
    let file: ElasticRuleFile = toml::from_str(text).map_err(|e| RuleFileError::InvalidToml {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let rule = file.rule;
    if rule.language != "eql" {
        return Err(RuleFileError::UnsupportedLanguage {
            path: path.to_path_buf(),
            language: rule.language,
        });
    }
    let query = rule.query.ok_or_else(|| RuleFileError::InvalidToml {
        path: path.to_path_buf(),
        message: "[rule] has no query".to_string(),
    })?;
    let mut detection = rule_from_query(path, query);
    detection.spec = DetectionRuleSpec {
        rule_id: rule.rule_id,
        display_name: Some(rule.name),
        description: rule.description,
        severity: rule.severity.unwrap_or_default(),
        risk_score: rule.risk_score,
        tags: rule.tags,
        threat: rule
            .threat
            .into_iter()
            .map(|threat| Threat {
                framework: threat.framework,
                tactic: threat.tactic.into(),
                techniques: threat
                    .technique
                    .into_iter()
                    .map(|technique| Technique {
                        id: technique.id,
                        name: technique.name,
                        reference: technique.reference,
                        subtechniques: technique.subtechnique.into_iter().map(Into::into).collect(),
                    })
                    .collect(),
            })
            .collect(),
        references: rule.references,
        false_positives: rule.false_positives,
        author: rule.author,
        license: rule.license,
        ..detection.spec
    };
    Ok(detection)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_rule_is_elastics() {
        let rule = default_rule().unwrap();
        assert_eq!(rule.metadata.name.as_deref(), Some(DEFAULT_RULE_NAME));
        let spec = &rule.spec;
        assert_eq!(
            spec.rule_id.as_deref(),
            Some("3a01e5c6-ce01-46d7-ac9f-52dc349695fb")
        );
        assert_eq!(
            spec.display_name.as_deref(),
            Some("Kubernetes Anonymous User Create/Update/Patch Pods Request")
        );
        assert_eq!(spec.severity, Severity::Medium);
        assert_eq!(spec.risk_score, Some(47));
        assert_eq!(spec.author, ["Elastic"]);
        assert_eq!(spec.license.as_deref(), Some("Elastic License v2"));
        assert_eq!(spec.threat[0].tactic.id, "TA0002");
        assert_eq!(spec.threat[0].techniques[0].id, "T1610");
        assert!(spec.tags.iter().any(|t| t == "Tactic: Execution"));
    }

    #[test]
    fn the_default_query_is_verbatim() {
        // Compared with the user's TOML when the shared folder is there.
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/default-rule.toml");
        let Ok(text) = std::fs::read_to_string(&path) else {
            println!("skipped: {} not found", path.display());
            return;
        };
        let elastic = parse_elastic_toml(&path, &text).unwrap();
        let ours = default_rule().unwrap();
        assert_eq!(ours.spec.query, elastic.spec.query);
        assert_eq!(ours.spec.description, elastic.spec.description);
        assert_eq!(ours.spec.threat, elastic.spec.threat);
        assert_eq!(ours.spec.tags, elastic.spec.tags);
        assert_eq!(ours.spec.rule_id, elastic.spec.rule_id);
    }

    #[test]
    fn yaml_documents_and_names() {
        let text = "apiVersion: vigil.dev/v1alpha1\nkind: DetectionRule\nmetadata: {name: a}\nspec: {query: 'any where true'}\n---\n---\napiVersion: vigil.dev/v1alpha1\nkind: DetectionRule\nmetadata: {name: b}\nspec: {query: 'any where false', severity: high}\n";
        let rules = parse_yaml(Path::new("r.yaml"), text).unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[1].spec.severity, Severity::High);
        let bad = parse_yaml(
            Path::new("r.yaml"),
            "apiVersion: vigil.dev/v1alpha1\nkind: DetectionRule\nmetadata: {name: c}\nspec: {query: x, severity: urgent}\n",
        );
        assert!(
            matches!(bad, Err(RuleFileError::InvalidYaml { .. })),
            "{bad:?}"
        );
        assert_eq!(
            name_from_path(Path::new("dir/Exec_Into Pod.eql")),
            "exec-into-pod"
        );
    }

    #[test]
    fn other_languages_are_refused_clearly() {
        let text = "[rule]\nname = \"x\"\nlanguage = \"kuery\"\nquery = \"a:b\"\n";
        let error = parse_elastic_toml(Path::new("x.toml"), text).unwrap_err();
        assert_eq!(
            error.to_string(),
            "x.toml: language `kuery` is not supported yet (vigil evaluates eql)"
        );
    }
}

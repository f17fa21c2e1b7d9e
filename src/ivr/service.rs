//! Flows for the rest of the service: the shared engine, compiled versions
//! cached by (tenant, flow, version), validation against the tenant's
//! prompts, queues, skills, allowed hosts and the speech model.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};

use super::engine::{Diagnostic, Flow, FlowEngine, Limits};
use super::refs::{self, Ref};
use super::store;
use super::testing::{self, CaseResult, TestFile};
use crate::ids::TenantId;

/// Compiled versions kept per node (a version never changes once saved).
const CACHE_MAX: usize = 2_000;

pub struct Flows {
    pub engine: FlowEngine,
    db: DatabaseConnection,
    data_dir: PathBuf,
    cache: Mutex<HashMap<(TenantId, String, i32), Arc<Flow>>>,
    asr: OnceLock<Arc<crate::asr::Asr>>,
    pub metrics: crate::metrics::FlowMetrics,
}

impl std::fmt::Debug for Flows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flows").finish_non_exhaustive()
    }
}

/// A published flow as a session starts it: the session keeps this
/// version to its end, whatever is published meanwhile.
pub struct Published {
    pub flow: Arc<Flow>,
    pub settings: store::settings::Model,
}

impl Flows {
    pub fn new(
        db: DatabaseConnection,
        data_dir: PathBuf,
        limits: Limits,
        metrics: crate::metrics::FlowMetrics,
    ) -> Self {
        Flows {
            metrics,
            engine: FlowEngine::new(limits),
            db,
            data_dir,
            cache: Mutex::new(HashMap::new()),
            asr: OnceLock::new(),
        }
    }

    /// Speech recognition, once its model is loaded.
    pub fn set_asr(&self, asr: Arc<crate::asr::Asr>) {
        let _ = self.asr.set(asr);
    }

    pub fn asr(&self) -> Option<&Arc<crate::asr::Asr>> {
        self.asr.get()
    }

    /// Compiles (or takes from the cache) one stored version.
    pub fn compiled(
        &self,
        t: TenantId,
        name: &str,
        v: &store::version::Model,
    ) -> Result<Arc<Flow>, Diagnostic> {
        let key = (t, name.to_owned(), v.version);
        if let Some(f) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(f.clone());
        }
        let f = Arc::new(self.engine.compile(name, v.version, &v.source)?);
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if c.len() >= CACHE_MAX {
            c.clear();
        }
        c.insert(key, f.clone());
        Ok(f)
    }

    /// The published version of flow `name`, compiled.
    pub async fn published(&self, t: TenantId, name: &str) -> Result<Option<Published>, DbErr> {
        let Some(f) = store::find(&self.db, t, name).await? else {
            return Ok(None);
        };
        let Some(v) = f.published_version else {
            return Ok(None);
        };
        let Some(version) = store::version(&self.db, t, f.id, v).await? else {
            return Ok(None);
        };
        let settings = store::settings(&self.db, t).await?;
        match self.compiled(t, name, &version) {
            Ok(flow) => Ok(Some(Published { flow, settings })),
            Err(d) => {
                // Saved versions compiled when they were saved; a change of
                // engine could still refuse one.
                tracing::error!(flow = name, version = v, line = d.line, error = %d.message, "published flow does not compile");
                Ok(None)
            }
        }
    }

    /// Everything wrong with a script (and its tests) for tenant `t`:
    /// compile errors, unknown queues and skills, hosts not allowed (errors);
    /// missing prompts and words the speech model does not know (warnings).
    pub async fn validate(
        &self,
        t: TenantId,
        source: &str,
        tests: Option<&str>,
    ) -> Result<Vec<Diagnostic>, DbErr> {
        let mut out = Vec::new();
        if let Err(d) = self.engine.compile("validate", 0, source) {
            out.push(d);
        }
        if let Some(tests) = tests.filter(|s| !s.trim().is_empty())
            && let Err(e) = TestFile::parse(tests)
        {
            // The test file's line, when the parser knows it.
            let line = e
                .rsplit_once("(line ")
                .and_then(|(_, r)| r.trim_end_matches(')').parse().ok())
                .unwrap_or(0);
            out.push(Diagnostic::error(line, 0, format!("tests: {e}")));
        }
        let found = refs::scan(source);
        if found.is_empty() {
            return Ok(out);
        }
        use crate::acd::catalog::{queue, skill};
        let queues: Vec<String> = queue::Entity::find()
            .filter(queue::Column::TenantId.eq(t))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|q| q.name)
            .collect();
        let skills: Vec<String> = skill::Entity::find()
            .filter(skill::Column::TenantId.eq(t))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|s| s.name)
            .collect();
        let hosts = store::hosts_of(&store::settings(&self.db, t).await?);
        for f in found {
            let (line, col) = (f.line, f.column);
            match f.what {
                Ref::Prompt(p) => match crate::prompts::path(&self.data_dir, t, &p) {
                    None => out.push(Diagnostic::error(line, col, format!("{p:?} is not a prompt name"))),
                    Some(path) if !path.is_file() => out.push(Diagnostic::warning(
                        line,
                        col,
                        format!("prompt {p:?} does not exist yet (upload it under Prompts); callers would hear nothing"),
                    )),
                    Some(_) => {}
                },
                Ref::Queue(q) if !queues.contains(&q) => out.push(Diagnostic::error(
                    line,
                    col,
                    format!("queue {q:?} does not exist (queues: {})", list(&queues)),
                )),
                Ref::Skill(s) if !skills.contains(&s) => out.push(Diagnostic::error(
                    line,
                    col,
                    format!("skill {s:?} does not exist (skills: {})", list(&skills)),
                )),
                Ref::Url(u) => {
                    let host = url::Url::parse(&u).ok().and_then(|u| u.host_str().map(str::to_ascii_lowercase));
                    match host {
                        Some(h) if hosts.iter().any(|a| a.eq_ignore_ascii_case(&h)) => {}
                        Some(h) => out.push(Diagnostic::error(
                            line,
                            col,
                            format!("host {h:?} is not allowed for flows (flow settings: allowed HTTP hosts)"),
                        )),
                        None => out.push(Diagnostic::error(line, col, format!("{u:?} is not an http(s) URL"))),
                    }
                }
                Ref::Phrase(p) => {
                    if let Some(asr) = self.asr() {
                        let unknown = asr.unknown_words(std::slice::from_ref(&p));
                        if !unknown.is_empty() {
                            out.push(Diagnostic::warning(
                                line,
                                col,
                                format!("the speech model does not know {} (in {p:?}): it cannot be recognised", unknown.join(", ")),
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Runs a flow's test cases (text of a test file) against `source`.
    pub fn run_tests(&self, source: &str, tests: &str) -> Result<Vec<CaseResult>, Diagnostic> {
        let flow = self.engine.compile("test", 0, source)?;
        let file =
            TestFile::parse(tests).map_err(|e| Diagnostic::error(0, 0, format!("tests: {e}")))?;
        Ok(file
            .cases
            .iter()
            .map(|c| testing::run_case(&self.engine, &flow, c))
            .collect())
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none yet".into()
    } else {
        names.join(", ")
    }
}

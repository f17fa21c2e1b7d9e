//! Prompts: audio loaded once from a WAV file (any common format, converted
//! to 8 kHz mono by [`wav::load`]) and shared by every call that plays it.

use super::wav::{self, WavError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Audio ready to play: 8 kHz mono linear PCM.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub samples: Arc<[i16]>,
}

impl Prompt {
    pub fn from_samples(samples: Vec<i16>) -> Self {
        Prompt {
            samples: samples.into(),
        }
    }

    /// Length in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.samples.len() as u64 * 1000 / wav::RATE as u64
    }

    /// Loads a file now (blocking I/O and resampling: call from a blocking thread).
    pub fn load(path: &Path) -> Result<Self, WavError> {
        Ok(Prompt::from_samples(wav::load(path)?.samples))
    }
}

/// Prompts by file path, each loaded once. A file changed on disk is not
/// reloaded until [`PromptCache::forget`] drops it.
#[derive(Debug, Default, Clone)]
pub struct PromptCache {
    loaded: Arc<Mutex<HashMap<PathBuf, Arc<Prompt>>>>,
}

impl PromptCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The prompt for `path`, loading it on the blocking pool the first time.
    pub async fn get(&self, path: &Path) -> Result<Arc<Prompt>, WavError> {
        if let Some(p) = self.lock().get(path) {
            return Ok(p.clone());
        }
        let owned = path.to_path_buf();
        let prompt = tokio::task::spawn_blocking(move || Prompt::load(&owned))
            .await
            .map_err(|e| WavError::Io(std::io::Error::other(e.to_string())))??;
        // Two callers may load the same file at once; the first stored wins
        // so everyone shares one copy.
        let mut map = self.lock();
        Ok(map
            .entry(path.to_path_buf())
            .or_insert_with(|| Arc::new(prompt))
            .clone())
    }

    /// Drops a cached prompt (the next `get` reloads it).
    pub fn forget(&self, path: &Path) {
        self.lock().remove(path);
    }

    /// Prompts held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Arc<Prompt>>> {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }
}

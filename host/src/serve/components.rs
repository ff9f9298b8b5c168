//! The components a host has run, by content hash: each downloaded, verified and compiled
//! once (the compile cache is keyed by the same hash, so a restarted host only reads it).

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::{Context, Result};

use crate::cluster::{Cluster, objects};
use crate::runtime::Runtime;
use crate::runtime::component::Component;

pub(super) struct Components {
    runtime: Runtime,
    cluster: Cluster,
    loaded: Mutex<HashMap<String, Component>>,
}

impl Components {
    pub(super) fn new(runtime: Runtime, cluster: Cluster) -> Components {
        Components {
            runtime,
            cluster,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// The component `key` (`sha256-<hex>`), named `name` in messages.
    pub(super) fn get(&self, key: &str, name: &str) -> Result<Component> {
        if let Some(component) = self
            .loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
        {
            return Ok(component.clone());
        }
        let bytes = self
            .cluster
            .block_on(objects::download(&self.cluster, key))?;
        let component = Component::from_bytes(&self.runtime, name, &bytes)
            .with_context(|| format!("component {name} ({key}) cannot run on this host"))?;
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), component.clone());
        Ok(component)
    }
}

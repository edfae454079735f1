//! Choosing the iptables backend (reference §3.2): finding the nft and legacy
//! executables per family (or taking the configured ones), reading each
//! backend's current rules once, probing the match modules, and picking the
//! backend with kumactl's rules. Everything here only reads: `--version`,
//! `-m <mod> -h` and `*-save` without `-t` instantiate no table, so a dry run
//! leaves the host as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::error::UsageError;
use crate::host::exec::Cmd;
use crate::host::receipt::{ExecutablePaths, Mode};
use crate::host::save::Saved;
use crate::model::Family;

const FALLBACK_DIRS: [&str; 4] = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// Match modules kumactl probes; tcp and owner are required.
const MODULES: [&str; 6] = ["owner", "tcp", "udp", "comment", "conntrack", "multiport"];

/// The three executables of one family and backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executables {
    pub family: Family,
    pub mode: Mode,
    pub iptables: PathBuf,
    pub save: PathBuf,
    pub restore: PathBuf,
    /// `v1.8.9` etc.
    pub version: String,
    /// Configured by the user rather than found.
    pub custom: bool,
}

impl Executables {
    /// The executables a receipt recorded for one family.
    pub fn from_receipt(f: &crate::host::receipt::FamilyReceipt) -> Self {
        Executables {
            family: f.family,
            mode: f.mode,
            iptables: f.executables.iptables.clone(),
            save: f.executables.save.clone(),
            restore: f.executables.restore.clone(),
            version: String::new(),
            custom: true,
        }
    }

    pub fn paths(&self) -> ExecutablePaths {
        ExecutablePaths {
            iptables: self.iptables.clone(),
            save: self.save.clone(),
            restore: self.restore.clone(),
        }
    }

    /// `iptables v1.8.9 (nf_tables): /usr/sbin/iptables-nft, …`.
    pub fn describe(&self) -> String {
        format!(
            "{} {} ({}): {}, {}, {}",
            self.family.tool(),
            self.version,
            self.mode,
            self.iptables.display(),
            self.save.display(),
            self.restore.display()
        )
    }

    /// `<save> -c`: every table with counters. Output that is not a
    /// complete save is an error (see [`Saved::parse_checked`]).
    pub fn save_all(&self) -> anyhow::Result<(String, Saved)> {
        let out = Cmd::new(&self.save).arg("-c").run()?;
        let saved = Saved::parse_checked(&out.stdout)
            .with_context(|| format!("reading the rules with {} -c", self.save.display()))?;
        Ok((out.stdout, saved))
    }
}

/// Which match modules load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Modules {
    pub owner: bool,
    pub tcp: bool,
    pub udp: bool,
    pub comment: bool,
    pub conntrack: bool,
    pub multiport: bool,
}

impl Modules {
    fn set(&mut self, name: &str, ok: bool) {
        match name {
            "owner" => self.owner = ok,
            "tcp" => self.tcp = ok,
            "udp" => self.udp = ok,
            "comment" => self.comment = ok,
            "conntrack" => self.conntrack = ok,
            "multiport" => self.multiport = ok,
            _ => {}
        }
    }

    /// The minimum kumactl requires (with the nat table).
    pub fn minimal(&self) -> bool {
        self.tcp && self.owner
    }
}

/// A backend that was looked at: executables, current rules, modules.
#[derive(Debug, Clone)]
pub struct Probed {
    pub exes: Executables,
    pub saved: Saved,
    pub modules: Modules,
}

/// Parses `iptables v1.8.9 (nf_tables)`: version and mode. No parenthesis
/// (old releases) and `(legacy)` mean legacy.
pub fn parse_version(text: &str) -> Option<(String, Mode)> {
    let first = text.lines().find(|l| !l.trim().is_empty())?.trim();
    let mut words = first.split_whitespace();
    let name = words.next()?;
    if !(name.starts_with("iptables") || name.starts_with("ip6tables")) {
        return None;
    }
    let version = words.next()?;
    if !version.starts_with('v') || !version[1..].starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let mode = match words.next() {
        Some("(nf_tables)") => Mode::Nft,
        _ => Mode::Legacy,
    };
    Some((version.to_string(), mode))
}

fn version_of(path: &Path) -> Option<(String, Mode)> {
    let out = Cmd::new(path).arg("--version").output().ok()?;
    if out.success() {
        parse_version(&out.stdout).or_else(|| parse_version(&out.stderr))
    } else {
        None
    }
}

fn prefix(family: Family) -> &'static str {
    match family {
        Family::Ipv4 => "iptables",
        Family::Ipv6 => "ip6tables",
    }
}

fn candidates(name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(p) = which::which(name) {
        out.push(p);
    }
    for dir in FALLBACK_DIRS {
        let p = Path::new(dir).join(name);
        if p.exists() && !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Finds the executables of `mode` for `family`: `iptables-<mode>[-save|-restore]`
/// via PATH and the usual directories, then plain `iptables[-save|-restore]`
/// when its `--version` reports that mode (RHEL 8 ships only the plain names).
pub fn find(family: Family, mode: Mode) -> Option<Executables> {
    let base = prefix(family);
    let mut names = vec![format!("{base}-{}", mode.as_str())];
    names.push(base.to_string());
    for name in names {
        for iptables in candidates(&name) {
            let Some((version, found)) = version_of(&iptables) else {
                continue;
            };
            if found != mode {
                continue;
            }
            let companion = |suffix: &str| -> Option<PathBuf> {
                for cand in candidates(&format!("{name}{suffix}")) {
                    if same_file(&cand, &iptables) {
                        return Some(cand);
                    }
                    if version_of(&cand).is_some_and(|(_, m)| m == mode) {
                        return Some(cand);
                    }
                }
                None
            };
            let (Some(save), Some(restore)) = (companion("-save"), companion("-restore")) else {
                continue;
            };
            return Some(Executables {
                family,
                mode,
                iptables,
                save,
                restore,
                version,
                custom: false,
            });
        }
    }
    None
}

/// The configured executables of a family, if any are configured. All three
/// must be given, exist and report the same mode; anything else is an error
/// (kumactl warned and fell back to detection, which could write the rules
/// into a backend the user did not choose).
pub fn configured(
    family: Family,
    map: &BTreeMap<String, String>,
) -> Result<Option<Executables>, UsageError> {
    let base = prefix(family);
    let keys = [
        base.to_string(),
        format!("{base}-save"),
        format!("{base}-restore"),
    ];
    let given: Vec<Option<&String>> = keys.iter().map(|k| map.get(k)).collect();
    if given.iter().all(Option::is_none) {
        return Ok(None);
    }
    if given.iter().any(Option::is_none) {
        let missing: Vec<&str> = keys
            .iter()
            .zip(&given)
            .filter(|(_, g)| g.is_none())
            .map(|(k, _)| k.as_str())
            .collect();
        return Err(UsageError::new(format!(
            "invalid value for --iptables-executables / iptablesExecutables: '{}' must be given together with '{}' and '{}'; missing: {}",
            keys[0],
            keys[1],
            keys[2],
            missing.join(", ")
        )));
    }
    let mut paths = Vec::new();
    let mut modes = Vec::new();
    let mut version = String::new();
    for (key, value) in keys.iter().zip(given.iter().map(|g| g.expect("checked"))) {
        let path = if value.contains('/') {
            PathBuf::from(value)
        } else {
            which::which(value).map_err(|_| {
                UsageError::new(format!(
                    "invalid value '{value}' for {key} in --iptables-executables: not found in PATH"
                ))
            })?
        };
        if !path.exists() {
            return Err(UsageError::new(format!(
                "invalid value '{value}' for {key} in --iptables-executables: no such file"
            )));
        }
        // The three are usually one multi-call binary: ask it once.
        let known = paths
            .iter()
            .zip(&modes)
            .find(|(p, _): &(&PathBuf, &(String, Mode))| same_file(p, &path))
            .map(|(_, (_, m))| (version.clone(), *m));
        let Some((v, mode)) = known.or_else(|| version_of(&path)) else {
            return Err(UsageError::new(format!(
                "invalid value '{value}' for {key} in --iptables-executables: '{} --version' does not identify an iptables executable",
                path.display()
            )));
        };
        version = v;
        modes.push((key.clone(), mode));
        paths.push(path);
    }
    if modes.iter().any(|(_, m)| *m != modes[0].1) {
        let list: Vec<String> = modes.iter().map(|(k, m)| format!("{k}: {m}")).collect();
        return Err(UsageError::new(format!(
            "executables are of mixed types; all must be of the same type ('nft' or 'legacy') [{}]",
            list.join(", ")
        )));
    }
    Ok(Some(Executables {
        family,
        mode: modes[0].1,
        iptables: paths[0].clone(),
        save: paths[1].clone(),
        restore: paths[2].clone(),
        version,
        custom: true,
    }))
}

/// Which modules load, with as few processes as possible: all at once, and
/// again without any that failed.
pub fn probe_modules(exes: &Executables) -> Modules {
    let mut wanted: Vec<&str> = MODULES.to_vec();
    let mut mods = Modules::default();
    for _ in 0..=MODULES.len() {
        let mut cmd = Cmd::new(&exes.iptables);
        for m in &wanted {
            cmd = cmd.args(["-m", m]);
        }
        let Ok(out) = cmd.arg("-h").output() else {
            return mods;
        };
        if out.success() {
            for m in &wanted {
                mods.set(m, true);
            }
            return mods;
        }
        // "Couldn't load match `foo':No such file or directory"
        let failed = out
            .stderr
            .split('`')
            .nth(1)
            .and_then(|s| s.split('\'').next())
            .map(str::to_string);
        match failed {
            Some(name) if wanted.contains(&name.as_str()) => wanted.retain(|m| *m != name),
            _ => return mods,
        }
    }
    mods
}

/// Reads a backend's rules and modules.
pub fn probe(exes: Executables) -> anyhow::Result<Probed> {
    // Two independent processes: run them side by side.
    let (saved, modules) = std::thread::scope(|s| {
        let save = s.spawn(|| exes.save_all());
        let modules = probe_modules(&exes);
        (save.join(), modules)
    });
    let (_, saved) = saved.map_err(|_| anyhow::anyhow!("the save thread panicked"))??;
    Ok(Probed {
        exes,
        saved,
        modules,
    })
}

/// The backend chosen for each family.
#[derive(Debug, Clone)]
pub struct Selection {
    pub v4: Probed,
    /// `None`: no usable ip6tables of the chosen mode.
    pub v6: Option<Probed>,
}

/// A previous install's backend, and how to tell whether it still holds
/// that install's rules.
pub struct Preference<'a> {
    pub mode: Mode,
    pub holds_ours: &'a (dyn Fn(&Saved) -> bool + Sync),
}

/// Picks the backend (reference §3.2): configured executables win; otherwise
/// nft and legacy are both looked at, and `prefer` (the mode of a previous
/// install's receipt) wins when it works and still holds rules of ours — a
/// receipt whose backend holds none (the rules went with a reboot) does not
/// decide, and a warning says so. IPv6 uses the mode chosen for IPv4.
pub fn select(
    executables: &BTreeMap<String, String>,
    want_v6: bool,
    prefer: Option<Preference<'_>>,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Option<Selection>> {
    // Configured IPv6 executables do not depend on the IPv4 choice: look at
    // them while IPv4 is being chosen.
    let v6_configured = if want_v6 {
        configured(Family::Ipv6, executables)?
    } else {
        None
    };
    let (v4, v6_probed) = std::thread::scope(|s| {
        let v6 = v6_configured.map(|exes| s.spawn(move || probe(exes)));
        let v4 = select_v4(executables, prefer, warnings);
        let v6 = v6.map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("a probe thread panicked")))
        });
        (v4, v6)
    });
    let Some(v4) = v4? else {
        return Ok(None);
    };
    let v6 = match v6_probed {
        Some(p) => Some(p?),
        None if !want_v6 => None,
        None => match find(Family::Ipv6, v4.exes.mode) {
            Some(exes) => {
                let p = probe(exes)?;
                if p.modules.minimal() {
                    Some(p)
                } else {
                    warnings.push(format!(
                        "[ip6tables] failed to initialize IPv6 executables: {} lacks the 'tcp' or 'owner' match",
                        p.exes.iptables.display()
                    ));
                    None
                }
            }
            None => {
                warnings.push(format!(
                    "[ip6tables] failed to initialize IPv6 executables: no ip6tables-{} executables found",
                    v4.exes.mode
                ));
                None
            }
        },
    };
    Ok(Some(Selection { v4, v6 }))
}

fn select_v4(
    executables: &BTreeMap<String, String>,
    prefer: Option<Preference<'_>>,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Option<Probed>> {
    match configured(Family::Ipv4, executables)? {
        Some(exes) => {
            let p = probe(exes)?;
            if !p.modules.minimal() {
                anyhow::bail!(
                    "the configured {} lacks the 'tcp' or 'owner' match",
                    p.exes.iptables.display()
                );
            }
            Ok(Some(p))
        }
        None => auto_select(Family::Ipv4, prefer, warnings),
    }
}

fn auto_select(
    family: Family,
    prefer: Option<Preference<'_>>,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Option<Probed>> {
    let mut found: Vec<Probed> = Vec::new();
    // Both backends are looked at side by side.
    let probed: Vec<(Mode, Option<anyhow::Result<Probed>>)> = std::thread::scope(|s| {
        let hs: Vec<_> = [Mode::Nft, Mode::Legacy]
            .map(|mode| (mode, s.spawn(move || find(family, mode).map(probe))))
            .into_iter()
            .collect();
        hs.into_iter()
            .map(|(mode, h)| {
                (
                    mode,
                    h.join()
                        .unwrap_or_else(|_| Some(Err(anyhow::anyhow!("a probe thread panicked")))),
                )
            })
            .collect()
    });
    for (mode, result) in probed {
        if let Some(result) = result {
            match result {
                Ok(p) if p.modules.minimal() => found.push(p),
                Ok(p) => warnings.push(format!(
                    "[{}] {} backend skipped: unmet minimal requirements (the 'tcp' and 'owner' matches)",
                    family.tool(),
                    p.exes.mode
                )),
                Err(e) => warnings.push(format!(
                    "[{}] {mode} backend skipped: {e:#}",
                    family.tool()
                )),
            }
        }
    }
    let pick = |m: Mode, found: &mut Vec<Probed>| {
        let i = found.iter().position(|p| p.exes.mode == m)?;
        Some(found.remove(i))
    };
    if found.len() <= 1 {
        return Ok(found.pop());
    }
    if let Some(pref) = prefer {
        let holds = found
            .iter()
            .find(|p| p.exes.mode == pref.mode)
            .map(|p| (pref.holds_ours)(&p.saved));
        match holds {
            Some(true) => return Ok(pick(pref.mode, &mut found)),
            Some(false) => warnings.push(format!(
                "[{}] the receipt names the {} backend, which holds none of its rules (were they lost in a reboot?); choosing the backend again",
                family.tool(),
                pref.mode
            )),
            None => {}
        }
    }
    let has = |m: Mode, found: &[Probed]| {
        found
            .iter()
            .find(|p| p.exes.mode == m)
            .map(|p| (p.saved.has_existing_rules(), p.saved.has_docker_output()))
            .unwrap_or_default()
    };
    let (nft_rules, nft_docker) = has(Mode::Nft, &found);
    let (legacy_rules, legacy_docker) = has(Mode::Legacy, &found);
    let mode = if nft_rules && legacy_rules {
        if nft_docker != legacy_docker {
            if nft_docker { Mode::Nft } else { Mode::Legacy }
        } else {
            warnings.push(format!(
                "[{}] conflicting iptables modes detected; both iptables-nft and iptables-legacy have existing rules and/or custom chains. To avoid potential conflicts, iptables-legacy will be ignored, and iptables-nft will be used",
                family.tool()
            ));
            Mode::Nft
        }
    } else if legacy_rules {
        Mode::Legacy
    } else {
        Mode::Nft
    };
    Ok(pick(mode, &mut found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_modes() {
        assert_eq!(
            parse_version("iptables v1.8.9 (nf_tables)\n"),
            Some(("v1.8.9".to_string(), Mode::Nft))
        );
        assert_eq!(
            parse_version("ip6tables-restore v1.8.9 (legacy)"),
            Some(("v1.8.9".to_string(), Mode::Legacy))
        );
        assert_eq!(
            parse_version("iptables v1.4.21"),
            Some(("v1.4.21".to_string(), Mode::Legacy))
        );
        assert_eq!(parse_version("nft v1.0.6 (Lester Gooch #5)"), None);
        assert_eq!(parse_version("iptables vX"), None);
    }

    #[test]
    fn partial_or_missing_configured_executables_are_errors() {
        let mut map = BTreeMap::new();
        map.insert("iptables".to_string(), "/usr/sbin/iptables".to_string());
        let e = configured(Family::Ipv4, &map).unwrap_err();
        assert!(
            e.0.contains("iptables-save") && e.0.contains("iptables-restore"),
            "{}",
            e.0
        );
        map.insert("iptables".to_string(), "/nonexistent/iptables".to_string());
        map.insert("iptables-save".to_string(), "/nonexistent/save".to_string());
        map.insert(
            "iptables-restore".to_string(),
            "/nonexistent/restore".to_string(),
        );
        let e = configured(Family::Ipv4, &map).unwrap_err();
        assert!(
            e.0.contains("'/nonexistent/iptables'") && e.0.contains("no such file"),
            "{}",
            e.0
        );
        assert!(configured(Family::Ipv6, &map).unwrap().is_none());
    }
}

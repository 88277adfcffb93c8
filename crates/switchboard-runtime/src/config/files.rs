use super::Problem;
use std::path::{Path, PathBuf};

/// One configuration file's text and the name it is reported under.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    /// How problems name the file (`agents/sales.toml`).
    pub label: String,
    /// The file name (`sales.toml`, `router.j2`).
    pub name: String,
    /// Contents.
    pub text: String,
}

/// Where a configuration comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// `switchboard.toml` on disk, with `agents/` and `prompts/` beside it.
    File(PathBuf),
    /// Files compiled into the binary (the demo), as (relative path, contents) pairs;
    /// relative paths in agent settings resolve against `base_dir`.
    Embedded {
        /// The files: `switchboard.toml`, `agents/*.toml`, `prompts/*`.
        files: &'static [(&'static str, &'static str)],
        /// Where relative paths resolve (the data dir).
        base_dir: PathBuf,
    },
}

pub(super) struct Files {
    pub main: ConfigFile,
    pub agents: Vec<ConfigFile>,
    pub prompts: Vec<ConfigFile>,
    pub base_dir: PathBuf,
    pub agents_dir_label: String,
}

impl ConfigSource {
    pub(super) fn read(&self, problems: &mut Vec<Problem>) -> Option<Files> {
        match self {
            Self::File(path) => read_dir_config(path, problems),
            Self::Embedded { files, base_dir } => {
                let pick = |prefix: &str| -> Vec<ConfigFile> {
                    let mut v: Vec<ConfigFile> = files
                        .iter()
                        .filter_map(|(p, t)| {
                            let name = p.strip_prefix(prefix)?;
                            Some(ConfigFile {
                                label: (*p).to_string(),
                                name: name.to_string(),
                                text: (*t).to_string(),
                            })
                        })
                        .collect();
                    v.sort_by(|a, b| a.name.cmp(&b.name));
                    v
                };
                let main = files.iter().find(|(p, _)| *p == "switchboard.toml").map(|(p, t)| ConfigFile {
                    label: (*p).to_string(),
                    name: (*p).to_string(),
                    text: (*t).to_string(),
                });
                let Some(main) = main else {
                    problems.push(Problem {
                        file: "switchboard.toml".into(),
                        field: String::new(),
                        message: "the embedded configuration has no switchboard.toml".into(),
                    });
                    return None;
                };
                Some(Files {
                    main,
                    agents: pick("agents/").into_iter().filter(|f| f.name.ends_with(".toml")).collect(),
                    prompts: pick("prompts/"),
                    base_dir: base_dir.clone(),
                    agents_dir_label: "agents".into(),
                })
            }
        }
    }
}

fn read_dir_config(path: &Path, problems: &mut Vec<Problem>) -> Option<Files> {
    let label = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            problems.push(Problem {
                file: label,
                field: String::new(),
                message: format!("cannot be read: {e}"),
            });
            return None;
        }
    };
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
    let main_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let agents_dir = dir.join("agents");
    let agents = read_folder(&agents_dir, Some("toml"), problems);
    let prompts_dir = dir.join("prompts");
    let prompts = if prompts_dir.is_dir() { read_folder(&prompts_dir, None, problems) } else { Vec::new() };
    Some(Files {
        main: ConfigFile { label, name: main_name, text },
        agents,
        prompts,
        base_dir: dir,
        agents_dir_label: agents_dir.display().to_string(),
    })
}

fn read_folder(dir: &Path, extension: Option<&str>, problems: &mut Vec<Problem>) -> Vec<ConfigFile> {
    let label = dir.display().to_string();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            problems.push(Problem {
                file: format!("{label}/"),
                field: String::new(),
                message: format!("cannot be read: {e}"),
            });
            return Vec::new();
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| extension.is_none_or(|ext| p.extension().is_some_and(|e| e == ext)))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| {
            let file_label = p.display().to_string();
            match std::fs::read_to_string(&p) {
                Ok(text) => Some(ConfigFile {
                    label: file_label,
                    name: p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                    text,
                }),
                Err(e) => {
                    problems.push(Problem {
                        file: file_label,
                        field: String::new(),
                        message: format!("cannot be read: {e}"),
                    });
                    None
                }
            }
        })
        .collect()
}

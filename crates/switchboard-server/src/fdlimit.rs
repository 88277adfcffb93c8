//! The process's own file-descriptor limit. Every open connection costs a descriptor (two while
//! a run waits on an upstream over HTTP/1), and the usual soft limit of 1,024 would cap a server
//! far below `[server] max_connections`.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, as far as the OS allows without
/// privileges. Returns the soft limit in force afterwards (`None` for unlimited), or the error
/// when it could not be raised; the old limit then stays.
pub fn raise_fd_limit() -> std::io::Result<Option<u64>> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return Ok(limit.current);
    }
    setrlimit(Resource::Nofile, Rlimit { current: limit.maximum, maximum: limit.maximum })?;
    Ok(getrlimit(Resource::Nofile).current)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
        assert_eq!(super::raise_fd_limit().expect("raising to the hard limit is allowed"), hard);
    }
}

//! Whom workers run as: resolved by the supervisor from `username` /
//! `groupname`, and taken on by the worker before it reads a byte from a
//! client.

use crate::wire::Credentials;
use lwsws_config::Global;
use nix::unistd::{Gid, Group, Uid, User};

/// Why a worker could not become its configured user.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("uid {0} has no entry in the user database; set \"groupname\" too")]
    NoPrimaryGroup(u32),
    #[error("cannot {step}: {source}")]
    Call {
        step: &'static str,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("privileges were not dropped: {0}")]
    StillPrivileged(String),
}

/// The identity workers take, or `None` when they keep the supervisor's.
/// Started as non-root nothing can change: a warning if the configured user
/// is another.
pub fn resolve(g: &Global) -> Result<Option<Credentials>, PrivilegeError> {
    let uid = g.user.as_ref().and_then(|a| a.id);
    let gid = g.group.as_ref().and_then(|a| a.id);
    if !Uid::effective().is_root() {
        if let Some(u) = uid
            && u != Uid::current().as_raw()
        {
            tracing::warn!(
                configured = u,
                current = Uid::current().as_raw(),
                "not started as root: workers keep the current user, not the configured one"
            );
        }
        return Ok(None);
    }
    if uid.is_none() && gid.is_none() {
        return Ok(None);
    }
    let user = match uid {
        Some(u) => User::from_uid(Uid::from_raw(u)).ok().flatten(),
        None => None,
    };
    let gid = match (gid, &user, uid) {
        (Some(g), _, _) => g,
        (None, Some(u), _) => u.gid.as_raw(),
        (None, None, Some(u)) => return Err(PrivilegeError::NoPrimaryGroup(u)),
        (None, None, None) => return Ok(None),
    };
    let groups = match &user {
        Some(u) => {
            let name =
                std::ffi::CString::new(u.name.clone()).map_err(|_| PrivilegeError::Call {
                    step: "read the user's groups",
                    source: nix::errno::Errno::EINVAL,
                })?;
            let mut list: Vec<u32> = nix::unistd::getgrouplist(&name, Gid::from_raw(gid))
                .map_err(|source| PrivilegeError::Call {
                    step: "read the user's groups",
                    source,
                })?
                .into_iter()
                .map(|g| g.as_raw())
                .collect();
            list.sort_unstable();
            list.dedup();
            list
        }
        None => vec![gid],
    };
    let user_name = user
        .as_ref()
        .map(|u| u.name.clone())
        .or_else(|| uid.map(|u| u.to_string()))
        .unwrap_or_else(|| "root".to_string());
    let group_name = Group::from_gid(Gid::from_raw(gid))
        .ok()
        .flatten()
        .map_or_else(|| gid.to_string(), |g| g.name);
    Ok(Some(Credentials {
        name: format!("{user_name}:{group_name}"),
        uid,
        gid,
        groups,
    }))
}

/// Becomes `c` for good: supplementary groups, then gid, then uid (real,
/// effective and saved), and checks that root cannot be regained.
pub fn drop_to(c: &Credentials) -> Result<(), PrivilegeError> {
    use nix::unistd::{getresgid, getresuid, setgroups, setresgid, setresuid};
    let call = |step| move |source| PrivilegeError::Call { step, source };
    let groups: Vec<Gid> = c.groups.iter().map(|&g| Gid::from_raw(g)).collect();
    setgroups(&groups).map_err(call("set the supplementary groups"))?;
    let gid = Gid::from_raw(c.gid);
    setresgid(gid, gid, gid).map_err(call("set the group id"))?;
    if let Some(u) = c.uid {
        let uid = Uid::from_raw(u);
        setresuid(uid, uid, uid).map_err(call("set the user id"))?;
        if u != 0 && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
            return Err(PrivilegeError::StillPrivileged(
                "setuid(0) succeeded after the drop".into(),
            ));
        }
        let r = getresuid().map_err(call("read the user ids"))?;
        if [r.real, r.effective, r.saved]
            .iter()
            .any(|x| x.as_raw() != u)
        {
            return Err(PrivilegeError::StillPrivileged(format!(
                "user ids are {}/{}/{}",
                r.real, r.effective, r.saved
            )));
        }
    }
    let r = getresgid().map_err(call("read the group ids"))?;
    if [r.real, r.effective, r.saved]
        .iter()
        .any(|x| x.as_raw() != c.gid)
    {
        return Err(PrivilegeError::StillPrivileged(format!(
            "group ids are {}/{}/{}",
            r.real, r.effective, r.saved
        )));
    }
    Ok(())
}

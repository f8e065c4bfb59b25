//! Server lists in settings, as every network backend reads them: a list
//! of `host:port`, written as a list, a JSON array in a string, or a
//! comma-separated string (`CACHEKIT_MEMCACHED_SERVERS`,
//! `CACHEKIT_REDIS_CLUSTER_NODES`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Writes the list as a list.
pub fn serialize<S: Serializer>(servers: &[String], serializer: S) -> Result<S::Ok, S::Error> {
    servers.serialize(serializer)
}

/// Reads a list, a JSON array in a string (`'["mc1:11211", "mc2:11211"]'`),
/// or a comma-separated string (`"mc1:11211, mc2:11211"`; blanks around
/// the commas and empty entries are dropped).
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Servers {
        List(Vec<String>),
        Text(String),
    }
    match Servers::deserialize(deserializer)? {
        Servers::List(list) => Ok(list),
        Servers::Text(text) if text.trim_start().starts_with('[') => serde_json::from_str(&text)
            .map_err(|e| serde::de::Error::custom(format!("not a JSON array of strings: {e}"))),
        Servers::Text(text) => Ok(text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()),
    }
}

/// The host and port of `server`, written `host:port` with a port in
/// 1..=65535 (an IPv6 host in brackets, returned without them); else why
/// not, for the setting's error.
pub fn host_port(server: &str) -> Result<(&str, u16), String> {
    let (host, port) = server
        .rsplit_once(':')
        .ok_or_else(|| format!("{server:?} is not host:port"))?;
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains('/') {
        return Err(format!("{server:?} has no host; write host:port"));
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok((host.trim_start_matches('[').trim_end_matches(']'), port)),
        _ => Err(format!(
            "{server:?} has port {port:?}; give a port in 1..=65535"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_in_every_form() {
        let read = |json: &str| -> Vec<String> {
            deserialize(&mut serde_json::Deserializer::from_str(json)).unwrap()
        };
        let want = ["a:1", "b:2"];
        assert_eq!(read(r#"["a:1", "b:2"]"#), want);
        assert_eq!(read(r#""[\"a:1\", \"b:2\"]""#), want);
        assert_eq!(read(r#"" a:1 , b:2 ,""#), want);
    }

    #[test]
    fn host_port_names_what_is_wrong() {
        assert_eq!(host_port("mc1:11211"), Ok(("mc1", 11211)));
        assert_eq!(host_port("[::1]:6379"), Ok(("::1", 6379)));
        for bad in ["mc1", ":11211", "mc1:0", "mc1:x", "tcp://mc1:1", "a b:1"] {
            assert!(host_port(bad).is_err(), "{bad}");
        }
    }
}

//! `scylla://HOST:PORT[,HOST:PORT...]/KEYSPACE[?replication=...&consistency=...]`

use scylla::statement::Consistency;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replication {
    /// `SimpleStrategy` with this replication factor (development).
    Simple(u32),
    /// `NetworkTopologyStrategy`: replicas per datacenter (deployment).
    NetworkTopology(Vec<(String, u32)>),
}

impl Replication {
    /// The CQL map literal for `CREATE KEYSPACE ... WITH replication = ...`.
    pub fn cql(&self) -> String {
        match self {
            Replication::Simple(rf) => format!("{{'class': 'SimpleStrategy', 'replication_factor': {rf}}}"),
            Replication::NetworkTopology(dcs) => {
                let dcs: Vec<String> = dcs.iter().map(|(dc, rf)| format!("'{dc}': {rf}")).collect();
                format!("{{'class': 'NetworkTopologyStrategy', {}}}", dcs.join(", "))
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct ScyllaConfig {
    pub nodes: Vec<String>,
    pub keyspace: String,
    pub replication: Replication,
    /// Reads and writes; LOCAL_QUORUM unless the URL says otherwise.
    pub consistency: Consistency,
}

impl ScyllaConfig {
    /// Parses a storage URL. `replication=simple:1` (the default) or
    /// `replication=nts:dc1=3,dc2=3`; `consistency=local_quorum|quorum|local_one|one|all|each_quorum`.
    pub fn parse(url: &str) -> Result<ScyllaConfig, String> {
        let rest = url.strip_prefix("scylla://").ok_or("a Scylla storage URL starts with scylla://")?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (hosts, keyspace) = rest.split_once('/').ok_or("the URL needs a keyspace: scylla://HOST:PORT/KEYSPACE")?;
        let nodes: Vec<String> = hosts.split(',').filter(|h| !h.is_empty()).map(str::to_owned).collect();
        if nodes.is_empty() {
            return Err("the URL names no node".into());
        }
        for n in &nodes {
            let (_, port) = n.rsplit_once(':').ok_or_else(|| format!("{n}: expected HOST:PORT"))?;
            port.parse::<u16>().map_err(|_| format!("{n}: invalid port"))?;
        }
        let valid = !keyspace.is_empty()
            && keyspace.len() <= 48
            && keyspace.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && keyspace.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
        if !valid {
            return Err(format!("{keyspace:?}: a keyspace is 1..48 of [A-Za-z0-9_], starting with a letter"));
        }
        let mut config = ScyllaConfig {
            nodes,
            keyspace: keyspace.to_lowercase(),
            replication: Replication::Simple(1),
            consistency: Consistency::LocalQuorum,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| format!("{pair}: expected key=value"))?;
            match k {
                "replication" => config.replication = parse_replication(v)?,
                "consistency" => config.consistency = parse_consistency(v)?,
                _ => return Err(format!("unknown option {k}")),
            }
        }
        Ok(config)
    }
}

fn parse_replication(v: &str) -> Result<Replication, String> {
    let bad = || format!("{v}: replication is simple:N or nts:DC=N[,DC=N...]");
    match v.split_once(':').ok_or_else(bad)? {
        ("simple", rf) => Ok(Replication::Simple(rf.parse().map_err(|_| bad())?)),
        ("nts", dcs) => {
            let mut out = Vec::new();
            for dc in dcs.split(',') {
                let (name, rf) = dc.split_once('=').ok_or_else(bad)?;
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                    return Err(bad());
                }
                out.push((name.to_owned(), rf.parse().map_err(|_| bad())?));
            }
            Ok(Replication::NetworkTopology(out))
        }
        _ => Err(bad()),
    }
}

fn parse_consistency(v: &str) -> Result<Consistency, String> {
    Ok(match v.to_ascii_lowercase().as_str() {
        "one" => Consistency::One,
        "local_one" => Consistency::LocalOne,
        "quorum" => Consistency::Quorum,
        "local_quorum" => Consistency::LocalQuorum,
        "each_quorum" => Consistency::EachQuorum,
        "all" => Consistency::All,
        _ => return Err(format!("{v}: unknown consistency")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let c = ScyllaConfig::parse("scylla://10.0.0.1:9042,10.0.0.2:9042/Guildhall").unwrap();
        assert_eq!(c.nodes, vec!["10.0.0.1:9042", "10.0.0.2:9042"]);
        assert_eq!(c.keyspace, "guildhall");
        assert_eq!(c.replication, Replication::Simple(1));
        assert_eq!(c.consistency, Consistency::LocalQuorum);
        let c = ScyllaConfig::parse("scylla://h:9042/ks?replication=nts:dc1=3,dc2=2&consistency=quorum").unwrap();
        assert_eq!(c.replication.cql(), "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}");
        assert_eq!(c.consistency, Consistency::Quorum);
        for bad in [
            "h:9042/ks",
            "scylla://h:9042",
            "scylla://h/ks",
            "scylla://h:9042/1ks",
            "scylla://h:9042/k;s",
            "scylla://h:9042/ks?replication=nts:d'c=3",
            "scylla://h:9042/ks?x=1",
        ] {
            assert!(ScyllaConfig::parse(bad).is_err(), "{bad}");
        }
    }
}

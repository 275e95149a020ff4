//! Test reward model that tries to leave the sandbox. `[config] attempt`
//! picks the attempt and `address` the target of socket attempts. `score`
//! returns an error naming the attempt when it succeeds, and scores of 0
//! with the failure on stderr when the sandbox holds.

use std::io::Read;

use laser_plugin_sdk::{RewardModel, ScoredInstance, export_reward_model};

struct EscapeRm {
    attempt: String,
    /// Socket address for the `socket` and `udp` attempts.
    address: String,
}

impl RewardModel for EscapeRm {
    fn new() -> Self {
        EscapeRm {
            attempt: "file".to_string(),
            address: "127.0.0.1:80".to_string(),
        }
    }

    fn configure(&mut self, config_json: &str) -> Result<(), String> {
        let config: serde_json::Value =
            serde_json::from_str(config_json).map_err(|e| e.to_string())?;
        self.attempt = config["attempt"]
            .as_str()
            .ok_or("missing string setting `attempt`")?
            .to_string();
        if let Some(address) = config["address"].as_str() {
            self.address = address.to_string();
        }
        Ok(())
    }

    fn score(&mut self, batch: Vec<ScoredInstance>) -> Result<Vec<Vec<f64>>, String> {
        match attempt(&self.attempt, &self.address) {
            Ok(detail) => {
                return Err(format!("{} succeeded: {detail}", self.attempt));
            }
            Err(error) => eprintln!("{} failed: {error}", self.attempt),
        }
        Ok(batch
            .iter()
            .map(|item| vec![0.0; item.candidates.len()])
            .collect())
    }
}

/// Runs one escape attempt; `Ok` describes what leaked.
fn attempt(name: &str, address: &str) -> Result<String, String> {
    match name {
        "file" => {
            let mut text = String::new();
            std::fs::File::open("/etc/passwd")
                .and_then(|mut file| file.read_to_string(&mut text))
                .map_err(|e| e.to_string())?;
            Ok(format!("read {} bytes of /etc/passwd", text.len()))
        }
        "dir" => {
            let entries = std::fs::read_dir("/").map_err(|e| e.to_string())?;
            Ok(format!("listed {} entries of /", entries.count()))
        }
        "write" => {
            std::fs::write("/tmp/escape-rm", b"escaped").map_err(|e| e.to_string())?;
            Ok("wrote /tmp/escape-rm".to_string())
        }
        "env" => {
            let vars: Vec<(String, String)> = std::env::vars().collect();
            if vars.is_empty() {
                Err("no environment variables".to_string())
            } else {
                Ok(format!("read {} environment variables", vars.len()))
            }
        }
        "args" => {
            let args: Vec<String> = std::env::args().collect();
            if args.is_empty() {
                Err("no arguments".to_string())
            } else {
                Ok(format!("read arguments {args:?}"))
            }
        }
        "socket" => {
            std::net::TcpStream::connect(address).map_err(|e| e.to_string())?;
            Ok(format!("connected to {address}"))
        }
        "udp" => {
            let socket = std::net::UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
            socket
                .send_to(b"escaped", address)
                .map_err(|e| e.to_string())?;
            Ok("sent a UDP datagram".to_string())
        }
        "dns" => {
            use std::net::ToSocketAddrs;
            let addresses = ("localhost", 80)
                .to_socket_addrs()
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "resolved localhost to {} addresses",
                addresses.count()
            ))
        }
        other => Err(format!("unknown attempt {other:?}")),
    }
}

export_reward_model!(EscapeRm);

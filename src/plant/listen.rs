//! The plant view's MQTT side: one subscription to `<prefix>/#` (QoS 0, a clean session: the
//! retained status and state topics give a newcomer the whole plant at once).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, Packet, QoS};

use super::Plant;
use crate::alarm::sink::mqtt::client_options;

/// Where and how to listen.
#[derive(Debug, Clone)]
pub struct ListenOptions {
    pub host: String,
    pub port: u16,
    pub prefix: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The broker's CA certificate (PEM): TLS.
    pub ca: Option<Vec<u8>>,
}

/// Follow the plant until `stop` is set or `until` passes, calling `show` with the view at
/// most every `every` (and once at the end). An error when the broker cannot be reached at
/// all within `connect_timeout`; a link lost later is retried.
pub fn follow(
    o: &ListenOptions,
    stop: &AtomicBool,
    until: Option<Instant>,
    every: Duration,
    connect_timeout: Duration,
    mut show: impl FnMut(&Plant, bool),
) -> Result<Plant, String> {
    let id = format!("mpdr-plant-{}", std::process::id());
    let mut mo = client_options(&id, &o.host, o.port, o.username.as_deref(), o.password.clone(), o.ca.clone());
    mo.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut conn): (Client, _) = Client::new(mo, 16);
    let filter = format!("{}/#", o.prefix);
    let mut plant = Plant { listening_since_ms: Some(crate::alarm::deliver::now_ms()), ..Default::default() };
    let started = Instant::now();
    let (mut connected, mut last_error) = (false, String::new());
    let mut last_show = Instant::now() - every;
    while !stop.load(Ordering::Relaxed) && until.is_none_or(|u| Instant::now() < u) {
        match conn.recv_timeout(Duration::from_millis(200)) {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                connected = true;
                client.try_subscribe(filter.as_str(), QoS::AtMostOnce).map_err(|e| e.to_string())?;
            }
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                plant.apply(&o.prefix, &p.topic, &p.payload);
            }
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => {
                last_error = e.to_string();
                if connected {
                    // A message over the packet limit, or a link cut: retained messages may be
                    // missing from the view until it is whole again.
                    plant.note_incomplete(format!(
                        "the link to the broker broke ({last_error}): messages may be missing"
                    ));
                }
                if !connected && started.elapsed() > connect_timeout {
                    return Err(format!("cannot reach the broker {}:{}: {last_error}", o.host, o.port));
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        if last_show.elapsed() >= every {
            show(&plant, connected);
            last_show = Instant::now();
        }
    }
    if !connected {
        let why = if last_error.is_empty() { "no answer".to_string() } else { last_error };
        return Err(format!("cannot reach the broker {}:{}: {why}", o.host, o.port));
    }
    let _ = client.try_disconnect();
    show(&plant, connected);
    Ok(plant)
}

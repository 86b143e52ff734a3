//! A delay line between the site agents and the coordinator, to measure a study at a wide-area
//! round-trip time on one machine (`coordinator demo --rtt-ms 50`).
//!
//! Why not netem: this kernel has none, and a benchmark should not need root. The line is a TCP
//! relay on a loopback port: every chunk of bytes it reads from one side is written to the other
//! `rtt / 2` after it arrived, in order, so every byte of the TLS stream — handshakes, tasks,
//! answers, keep-alives — takes the round-trip time there and back, as over a long link. It
//! adds no bandwidth limit and no loss, and it buffers what the receiver has not yet read (up
//! to 64 MiB each way, as a router's queue would), so the figures it gives are those of
//! latency alone. It is a benchmark tool: it listens on loopback only, and the coordinator sees
//! every agent behind it as 127.0.0.1.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A running delay line; dropping it stops accepting (open connections end with their peers).
pub struct DelayLine {
    pub addr: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Listens on a free loopback port and relays every connection to `upstream`, each direction
/// delayed by half of `rtt`.
pub async fn start(upstream: SocketAddr, rtt: Duration) -> std::io::Result<DelayLine> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let one_way = rtt / 2;
    let accept = tokio::spawn(async move {
        while let Ok((downstream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(Ok(upstream)) = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(upstream)).await else { return };
                let _ = (downstream.set_nodelay(true), upstream.set_nodelay(true));
                let (down_read, down_write) = downstream.into_split();
                let (up_read, up_write) = upstream.into_split();
                tokio::join!(relay(down_read, up_write, one_way), relay(up_read, down_write, one_way));
            });
        }
    });
    Ok(DelayLine { addr, accept })
}

/// Copies `from` to `to`, each chunk `delay` after it was read.
async fn relay(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, delay: Duration) {
    // At most 1 024 chunks of 64 KiB in flight each way (64 MiB): a sender faster than its
    // receiver waits, as behind a full router queue, instead of growing memory.
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(1024);
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0 || tx.send((Instant::now() + delay, buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
        // Dropping `tx` lets the writer finish what is queued, then close its half.
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_arrive_in_order_one_rtt_after_a_round_trip() {
        // An echo server behind the line: a round trip takes at least the RTT.
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).await.unwrap();
            }
        });
        let rtt = Duration::from_millis(60);
        let line = start(echo_addr, rtt).await.unwrap();
        let mut client = TcpStream::connect(line.addr).await.unwrap();
        let message: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let sent = Instant::now();
        client.write_all(&message).await.unwrap();
        let mut back = vec![0u8; message.len()];
        client.read_exact(&mut back).await.unwrap();
        let elapsed = sent.elapsed();
        assert_eq!(back, message, "bytes in order and unchanged");
        assert!(elapsed >= rtt, "a round trip took {elapsed:?}, less than the {rtt:?} RTT");
        assert!(elapsed < rtt * 10, "a round trip took {elapsed:?}");
    }
}

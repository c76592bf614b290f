//! A single-threaded program on the global manager runs without a loop thread: `block_on`
//! drives the manager itself. One test in this binary, since any task polled outside
//! `block_on` would start the global loop thread for the whole process.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use futures::io::{AsyncReadExt, AsyncWriteExt};
use ioman_async::{block_on, global_manager, Async, Timer};

fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| {
                let p = e.ok()?.path().join("comm");
                Some(std::fs::read_to_string(p).ok()?.trim().to_string())
            })
            .collect()
        })
        .unwrap_or_default()
}

#[test]
fn block_on_drives_the_global_manager_on_the_calling_thread() -> io::Result<()> {
    block_on(async {
        let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0))?;
        let addr = listener.get_ref().local_addr()?;
        let mut c = Async::<TcpStream>::connect(addr).await?;
        let (mut s, _) = listener.accept().await?;
        for i in 0..100u8 {
            c.write_all(&[i; 32]).await?;
            let mut buf = [0u8; 32];
            s.read_exact(&mut buf).await?;
            assert_eq!(buf, [i; 32]);
        }
        Timer::after(Duration::from_millis(1)).await;
        Ok::<(), io::Error>(())
    })?;
    assert_eq!(global_manager()?.state(), ioman::State::Created);
    assert!(
        !thread_names().iter().any(|n| n.starts_with("ioman-loop")),
        "threads: {:?}",
        thread_names()
    );
    Ok(())
}

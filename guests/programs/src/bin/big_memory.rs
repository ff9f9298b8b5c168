//! A guest whose initial linear memory is over 256 MiB (a zero-initialised static), for the
//! test that a memory limit refuses it at instantiation.

static mut BIG: [u8; 256 << 20] = [0; 256 << 20];

fn main() {
    // Touch the static so that it is kept.
    let big = std::ptr::addr_of!(BIG);
    println!("{}", std::hint::black_box(big as usize));
}

fn main() {
    println!("hybrid-run");
}

;; critic.wat: when a message arrives, asks the model to critique it and replies to the
;; sender with the inference result (ABI v1, docs/abi.md).
;;
;; Input with an empty inbox: {"state":null,"status":"idle"} (nothing to review).
;; Otherwise it calls host.infer with
;;   {"max_tokens":32,"prompt":"Critique briefly: <the whole step input, as a string>"}
;; and returns {"state":null,"outbox":[{"to":"<first sender>","payload":<result>}],
;;              "status":"idle"}.
;; Capabilities: infer, log.
(module
  (import "host" "infer" (func $infer (param i32 i32) (result i64)))
  (import "host" "log" (func $log (param i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (global $out (mut i32) (i32.const 0))

  (data (i32.const 16) "\"inbox\":[{\"from\":\"")            ;; 18 bytes
  (data (i32.const 48) "{\"state\":null,\"status\":\"idle\"}") ;; 30 bytes
  (data (i32.const 96) "{\"max_tokens\":32,\"prompt\":\"Critique briefly: ") ;; 45 bytes
  (data (i32.const 144) "\"}")                                ;; 2 bytes
  (data (i32.const 160) "{\"state\":null,\"outbox\":[{\"to\":\"") ;; 31 bytes
  (data (i32.const 192) "\",\"payload\":")                   ;; 12 bytes
  (data (i32.const 208) "}],\"status\":\"idle\"}")           ;; 19 bytes
  (data (i32.const 240) "critic: asking the model")           ;; 24 bytes

  ;; alloc(size) -> ptr: bump allocation; 0 when memory cannot grow
  (func $alloc (export "alloc") (param $size i32) (result i32)
    (local $ptr i32) (local $end i32) (local $pages i32)
    (local.set $ptr (global.get $heap))
    (local.set $end (i32.add (local.get $ptr) (local.get $size)))
    (if (i32.lt_u (local.get $end) (local.get $ptr)) (then (return (i32.const 0))))
    (local.set $pages (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $heap (i32.and (i32.add (local.get $end) (i32.const 7)) (i32.const -8)))
    (local.get $ptr))

  ;; 1 when the n bytes at a and b are equal
  (func $eq (param $a i32) (param $b i32) (param $n i32) (result i32)
    (block $differ
      (loop $next
        (if (i32.eqz (local.get $n)) (then (return (i32.const 1))))
        (br_if $differ (i32.ne (i32.load8_u (local.get $a)) (i32.load8_u (local.get $b))))
        (local.set $a (i32.add (local.get $a) (i32.const 1)))
        (local.set $b (i32.add (local.get $b) (i32.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  ;; append len bytes at src to the output
  (func $emit (param $src i32) (param $len i32)
    (memory.copy (global.get $out) (local.get $src) (local.get $len))
    (global.set $out (i32.add (global.get $out) (local.get $len))))

  ;; address of the first occurrence of needle in hay, or -1
  (func $find (param $hay i32) (param $hlen i32) (param $needle i32) (param $nlen i32)
        (result i32)
    (local $i i32)
    (if (i32.lt_u (local.get $hlen) (local.get $nlen)) (then (return (i32.const -1))))
    (block $none
      (loop $next
        (br_if $none (i32.gt_u (local.get $i) (i32.sub (local.get $hlen) (local.get $nlen))))
        (if (call $eq (i32.add (local.get $hay) (local.get $i)) (local.get $needle)
                      (local.get $nlen))
          (then (return (i32.add (local.get $hay) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const -1))

  ;; append the n bytes at src as the inside of a JSON string (escape " and \)
  (func $emit_escaped (param $src i32) (param $n i32)
    (local $c i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $c (i32.load8_u (local.get $src)))
        (if (i32.or (i32.eq (local.get $c) (i32.const 34)) (i32.eq (local.get $c) (i32.const 92)))
          (then
            (i32.store8 (global.get $out) (i32.const 92))
            (global.set $out (i32.add (global.get $out) (i32.const 1)))))
        (i32.store8 (global.get $out) (local.get $c))
        (global.set $out (i32.add (global.get $out) (i32.const 1)))
        (local.set $src (i32.add (local.get $src) (i32.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next))))

  (func (export "step") (param $in i32) (param $len i32) (result i64)
    (local $at i32) (local $name i32) (local $end i32) (local $req i32) (local $res i64)
    (local $start i32) (local $res_len i32)
    ;; the first sender: inbox is the second top-level key and "from" the first message key
    (local.set $at (call $find (local.get $in) (local.get $len) (i32.const 16) (i32.const 18)))
    (if (i32.lt_s (local.get $at) (i32.const 0))
      (then (return (i64.or (i64.shl (i64.const 48) (i64.const 32)) (i64.const 30)))))
    (local.set $name (i32.add (local.get $at) (i32.const 18)))
    (local.set $end (local.get $name))
    (loop $scan
      (if (i32.ne (i32.load8_u (local.get $end)) (i32.const 34))
        (then (local.set $end (i32.add (local.get $end) (i32.const 1))) (br $scan))))
    ;; the request: the input escaped into the prompt string (at most twice as long)
    (local.set $req (call $alloc (i32.add (i32.shl (local.get $len) (i32.const 1))
                                          (i32.const 64))))
    (if (i32.eqz (local.get $req)) (then unreachable))
    (global.set $out (local.get $req))
    (call $emit (i32.const 96) (i32.const 45))
    (call $emit_escaped (local.get $in) (local.get $len))
    (call $emit (i32.const 144) (i32.const 2))
    (call $log (i32.const 240) (i32.const 24))
    (local.set $res (call $infer (local.get $req)
                                 (i32.sub (global.get $out) (local.get $req))))
    (if (i64.eqz (local.get $res)) (then unreachable))  ;; alloc failed: out of memory
    (local.set $res_len (i32.wrap_i64 (local.get $res)))
    ;; the reply
    (local.set $start (call $alloc (i32.add (local.get $res_len)
                                            (i32.add (i32.sub (local.get $end) (local.get $name))
                                                     (i32.const 64)))))
    (if (i32.eqz (local.get $start)) (then unreachable))
    (global.set $out (local.get $start))
    (call $emit (i32.const 160) (i32.const 31))
    (call $emit (local.get $name) (i32.sub (local.get $end) (local.get $name)))
    (call $emit (i32.const 192) (i32.const 12))
    (call $emit (i32.wrap_i64 (i64.shr_u (local.get $res) (i64.const 32))) (local.get $res_len))
    (call $emit (i32.const 208) (i32.const 19))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $start)) (i64.const 32))
            (i64.extend_i32_u (i32.sub (global.get $out) (local.get $start))))))

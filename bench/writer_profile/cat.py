import sys,re,collections
prism,mock=sys.argv[2],sys.argv[3]
proc=collections.Counter(); cat=collections.Counter(); thr=collections.Counter(); n=0
def category(sym,dso):
    s=sym
    if '[kernel' in dso:
        if re.search(r'tcp|inet|ip_|skb|sock|net_|dev_queue|ep_|epoll|__sys_(send|recv)|loopback',s): return 'kernel: TCP/loopback, epoll'
        if re.search(r'ext4|filemap|folio|jbd2|xas_|iomap|copy_folio|block|bio|fsync|pwrite|pread|page_cache|generic_perform',s): return 'kernel: file writes/reads (WAL, db)'
        if re.search(r'futex',s): return 'kernel: futex'
        if re.search(r'sched|switch|pick_|enqueue|dequeue|update_curr|finish_task',s): return 'kernel: scheduler'
        return 'kernel: other'
    if re.match(r'(sqlite3|pcache|btree|wal|vdbe|yy_|releaseMem|balance_|unix|pager|mem[A-Z]|insertCell|fillInCell|Rtree|moveto|accessPayload|getAndInit|allocate|clearCell|dropCell|computeCellSize|cellSize|editPage|decodeFlags|moveToChild|moveToLeaf|freePage|pageInsertArray|rebuildPage|vdbe)',s, re.I) or 'libsqlite' in dso: return 'SQLite'
    if re.search(r'malloc|free|realloc|calloc|cfree|memmove|memcpy|memset|__memcpy|__memset|__memmove|_int_|consolidate|tcache',s): return 'libc: malloc/free, memcpy'
    if re.search(r'serde|json',s): return 'JSON (serde)'
    if re.search(r'hyper|h1|httparse|http::|axum|tower',s): return 'HTTP (hyper/axum/tower)'
    if re.search(r'tokio',s): return 'tokio runtime'
    if re.search(r'tracing',s): return 'tracing'
    if re.search(r'prism',s): return 'prism code'
    if re.search(r'pthread|syscall|__lll|futex',s): return 'libc: locks, syscall stubs'
    if re.search(r'rustls|ring|aws_lc',s): return 'TLS'
    if re.search(r'std::|core::|alloc::',s): return 'Rust std/core'
    return 'other: '+(s.split('::')[0][:40] if s else dso.split('/')[-1])
for line in open(sys.argv[1]):
    m=re.match(r'\s*(.+?)\s+(\d+)/(\d+)\s+([0-9a-f]+)\s+(.*?)\s+\((.*)\)\s*$',line)
    if not m: continue
    comm,pid,tid,ip,sym,dso=m.groups(); n+=1
    who = 'prism' if pid==prism else 'mock' if pid==mock else ('loadgen' if 'loadgen' in dso else comm)
    proc[who]+=1
    if pid==prism:
        cat[category(sym,dso)]+=1; thr[re.sub(r'\d+','',comm)]+=1
print("samples",n)
for k,v in proc.most_common(10): print(f"  {100*v/n:5.1f}%  {k}")
P=sum(cat.values())
print("prism, by thread:"); [print(f"  {100*v/P:5.1f}%  {k}") for k,v in thr.most_common(8)]
print("prism, by category:"); [print(f"  {100*v/P:5.1f}%  {k}") for k,v in cat.most_common(18)]

import sys,re,datetime
def ts(s): return datetime.datetime.fromisoformat(s.rstrip('Z')).timestamp()
groups=[];ckpts=[];passive=[]
for line in open(sys.argv[1]):
    m=re.match(r'(\S+) DEBUG prism_embedded::writer: (.*)',line)
    if not m: continue
    t=ts(m.group(1)); kv=dict(re.findall(r'(\w+)=(-?\d+)',m.group(2)))
    kv={k:int(v) for k,v in kv.items()}
    if 'slow group' in line: groups.append((t,kv))
    elif 'writer checkpoint' in line: ckpts.append((t,kv))
    elif 'passive checkpoint' in line: passive.append((t,kv))
print(f"slow groups {len(groups)}, writer checkpoints {len(ckpts)} (sum {sum(k['took_us'] for _,k in ckpts)/1000:.0f} ms, max {max([k['took_us'] for _,k in ckpts] or [0])/1000:.1f} ms), passive {len(passive)} (sum {sum(k['took_us'] for _,k in passive)/1000:.0f} ms max {max([k['took_us'] for _,k in passive] or [0])/1000:.1f})")
# a group's log line is written after its commit; its window is [t-total, t]
behind=0; qdom=0; bdom=0; sdom=0; cdom=0
for t,k in groups:
    total=(k['queued_us']+k['begin_us']+k['statements_us']+k['commit_us'])/1e6
    start=t-total
    parts={'queued':k['queued_us'],'begin':k['begin_us'],'statements':k['statements_us'],'commit':k['commit_us']}
    dom=max(parts,key=parts.get)
    if dom=='queued':
        qdom+=1
        if any(start-0.0005 <= tc <= t-(k['begin_us']+k['statements_us']+k['commit_us'])/1e6+0.0005 for tc,_ in ckpts): behind+=1
    elif dom=='begin': bdom+=1
    elif dom=='statements': sdom+=1
    else: cdom+=1
print(f"dominant part: queued {qdom} (of which a writer checkpoint ended inside the queue wait: {behind}), begin {bdom}, statements {sdom}, commit {cdom}")
big=[k for _,k in groups if k['writes']>=100]
print("groups >=100 writes:",len(big), "statements ms:", sorted(k['statements_us']//1000 for k in big)[-10:])
import statistics
small=[k['statements_us']/k['writes'] for _,k in groups if k['writes']>=20]
if small: print("statements us per write in slow groups of >=20 writes: median %.0f"%statistics.median(small))
bs=sorted(k['begin_us'] for _,k in groups)[-10:]; print("largest begin us:",bs)

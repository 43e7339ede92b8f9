//! A slab with generations: slots are reused, and a stale key (from a timer entry or a
//! branch of an ended transaction) misses instead of reaching the slot's new occupant.

#[derive(Debug)]
struct Slot<T> {
    gen: u32,
    val: Option<T>,
}

#[derive(Debug)]
pub struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// The key the next `insert` will return (so a value can embed its own key).
    pub fn next_key(&self) -> (u32, u32) {
        match self.free.last() {
            Some(&i) => (i, self.slots[i as usize].gen),
            None => (self.slots.len() as u32, 0),
        }
    }

    pub fn insert(&mut self, val: T) -> (u32, u32) {
        self.len += 1;
        if let Some(i) = self.free.pop() {
            let s = &mut self.slots[i as usize];
            s.val = Some(val);
            (i, s.gen)
        } else {
            self.slots.push(Slot {
                gen: 0,
                val: Some(val),
            });
            (self.slots.len() as u32 - 1, 0)
        }
    }

    pub fn get(&self, idx: u32, gen: u32) -> Option<&T> {
        self.slots
            .get(idx as usize)
            .filter(|s| s.gen == gen)
            .and_then(|s| s.val.as_ref())
    }

    pub fn get_mut(&mut self, idx: u32, gen: u32) -> Option<&mut T> {
        self.slots
            .get_mut(idx as usize)
            .filter(|s| s.gen == gen)
            .and_then(|s| s.val.as_mut())
    }

    pub fn remove(&mut self, idx: u32, gen: u32) -> Option<T> {
        let s = self.slots.get_mut(idx as usize).filter(|s| s.gen == gen)?;
        let v = s.val.take()?;
        s.gen = s.gen.wrapping_add(1);
        self.free.push(idx);
        self.len -= 1;
        Some(v)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, u32, &T)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.val.as_ref().map(|v| (i as u32, s.gen, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_keys_miss() {
        let mut s = Slab::default();
        assert_eq!(s.next_key(), (0, 0));
        let a = s.insert("a");
        assert_eq!(s.get(a.0, a.1), Some(&"a"));
        assert_eq!(s.remove(a.0, a.1), Some("a"));
        assert_eq!(s.next_key(), (0, 1));
        let b = s.insert("b");
        assert_eq!(b, (0, 1));
        assert_eq!(s.get(a.0, a.1), None);
        assert_eq!(s.remove(a.0, a.1), None);
        assert_eq!(s.len(), 1);
        assert_eq!(s.iter().count(), 1);
    }
}
